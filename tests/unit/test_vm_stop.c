/* The stop state of a VM (vmm/vm.c) without KVM: every vCPU exit asks
 * vm_stopping(), so it must never wait for the stop lock; and which stop
 * wins over a guest reboot. */
#include <pthread.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "unit.h"
#include "vmm/vm.h"

static void init_vm(struct vm *vm)
{
    memset(vm, 0, sizeof(*vm));
    pthread_mutex_init(&vm->stop_lock, NULL);
    vm->stop_eventfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    CHECK(vm->stop_eventfd >= 0);
}

static void fini_vm(struct vm *vm)
{
    close(vm->stop_eventfd);
    pthread_mutex_destroy(&vm->stop_lock);
}

static void *ask_stopping(void *arg)
{
    struct vm *vm = arg;
    bool answers[2] = {vm_stopping(vm), vm_stop_reason(vm) == VM_STOP_POWEROFF};
    return (void *)(uintptr_t)(answers[0] && answers[1]);
}

TEST(vm_stopping_never_waits_for_the_stop_lock)
{
    struct vm vm;
    init_vm(&vm);
    vm_request_stop(&vm, VM_STOP_POWEROFF, "guest powered off");
    /* Another thread holds the lock (a stop being requested, a detail being
     * read) for as long as it likes: a vCPU must still get its answer. */
    pthread_mutex_lock(&vm.stop_lock);
    pthread_t t;
    CHECK_EQ(pthread_create(&t, NULL, ask_stopping, &vm), 0);
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += 2;
    void *ret = NULL;
    int rc = pthread_timedjoin_np(t, &ret, &deadline);
    pthread_mutex_unlock(&vm.stop_lock);
    CHECK_EQ(rc, 0);
    if (rc != 0)
        pthread_join(t, &ret);
    CHECK(ret == (void *)1);
    fini_vm(&vm);
}

TEST(every_terminal_stop_overrides_a_pending_reboot)
{
    static const enum vm_stop_reason terminal[] = {VM_STOP_POWEROFF, VM_STOP_SIGNAL,
                                                   VM_STOP_USER, VM_STOP_ERROR, VM_STOP_API};
    for (size_t i = 0; i < sizeof(terminal) / sizeof(terminal[0]); i++) {
        struct vm vm;
        init_vm(&vm);
        vm_request_stop(&vm, VM_STOP_REBOOT, "guest requested a reboot");
        vm_request_stop(&vm, VM_STOP_REBOOT, "again");
        vm_request_stop(&vm, terminal[i], "the stop %zu", i);
        char detail[64];
        CHECK_EQ(vm_stop_info(&vm, detail, sizeof(detail)), terminal[i]);
        CHECK_STR_CONTAINS(detail, "the stop");
        /* Once taken it stays: the first terminal stop wins, a reboot
         * cannot be taken. */
        vm_request_stop(&vm, terminal[(i + 1) % 5], "later");
        vm_request_stop(&vm, VM_STOP_REBOOT, "later reboot");
        CHECK_EQ(vm_stop_reason(&vm), terminal[i]);
        CHECK(!vm_take_reboot(&vm, detail, sizeof(detail)));
        fini_vm(&vm);
    }
}

TEST(a_taken_reboot_leaves_later_stops_standing)
{
    struct vm vm;
    init_vm(&vm);
    vm_request_stop(&vm, VM_STOP_REBOOT, "guest requested a reboot");
    char detail[64];
    CHECK(vm_take_reboot(&vm, detail, sizeof(detail)));
    CHECK_STR_CONTAINS(detail, "guest requested a reboot");
    CHECK(!vm_stopping(&vm));
    uint64_t n;
    CHECK(read(vm.stop_eventfd, &n, sizeof(n)) < 0);      /* drained */
    /* An API shutdown while the VM is rebuilt: it stands, eventfd too. */
    vm_request_stop(&vm, VM_STOP_API, "stopped through the API");
    CHECK_EQ(vm_stop_reason(&vm), VM_STOP_API);
    CHECK_EQ(read(vm.stop_eventfd, &n, sizeof(n)), (ssize_t)sizeof(n));
    fini_vm(&vm);
}
