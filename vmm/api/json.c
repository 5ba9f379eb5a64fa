#include "vmm/api/json.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vmm/api/internal.h"
#include "vmm/api/reply.h"
#include "vmm/log.h"
#include "vmm/size_parse.h"

/* A last answer that needs no allocation. */
static int send_oom(struct api_conn *c)
{
    static const char oom[] = "{\"error\":\"out of memory\"}\n";
    return api_reply_write(c->fd, c->req.head, 500, "application/json", NULL, oom,
                           sizeof(oom) - 1) ? -1 : 0;
}

/* Sends text (taken over) as the body. */
static int send_owned(struct api_conn *c, unsigned status, const char *content_type,
                      const char *allow, char *text, size_t len)
{
    int rc = api_reply_write(c->fd, c->req.head, status, content_type, allow, text, len);
    free(text);
    if (rc)
        log_debug("api: a client did not take its %u answer: %s", status, strerror(-rc));
    return rc ? -1 : 0;
}

/* Sends json_dumps() output (taken over) as the body, newline-terminated:
 * a newline makes curl output and ndjson-minded tools happier. */
static int send_json_text(struct api_conn *c, unsigned status, const char *allow, char *text)
{
    size_t len = strlen(text);
    char *withnl = realloc(text, len + 2);
    if (!withnl) {
        free(text);
        return send_oom(c);
    }
    withnl[len] = '\n';
    withnl[len + 1] = '\0';
    return send_owned(c, status, "application/json", allow, withnl, len + 1);
}

int api_send_json(struct api_conn *c, unsigned status, json_t *body)
{
    if (!body)
        return send_oom(c);
    /* Ten significant digits keep uptimes readable ("12.345678901"). */
    char *text = json_dumps(body, JSON_COMPACT | JSON_REAL_PRECISION(10));
    json_decref(body);
    if (!text)
        return send_oom(c);
    return send_json_text(c, status, NULL, text);
}

int api_write_error(int fd, bool head_only, unsigned status, const char *allow,
                    const char *msg)
{
    char clean[512];
    snprintf(clean, sizeof(clean), "%s", msg);
    /* Messages quote the client's path or values: keep them valid UTF-8. */
    for (char *p = clean; *p; p++) {
        if ((unsigned char)*p < 0x20 || (unsigned char)*p > 0x7e)
            *p = '?';
    }
    json_t *body = json_pack("{s:s}", "error", clean);
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    char *withnl = text ? realloc(text, strlen(text) + 2) : NULL;
    int rc;
    if (withnl) {
        strcat(withnl, "\n");
        rc = api_reply_write(fd, head_only, status, "application/json", allow, withnl,
                             strlen(withnl));
        free(withnl);
    } else {
        static const char oom[] = "{\"error\":\"out of memory\"}\n";
        free(text);
        rc = api_reply_write(fd, head_only, 500, "application/json", NULL, oom, sizeof(oom) - 1);
    }
    if (rc)
        log_debug("api: a client did not take its %u answer: %s", status, strerror(-rc));
    return rc ? -1 : 0;
}

int api_send_error(struct api_conn *c, unsigned status, const char *allow, const char *fmt,
                   ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    return api_write_error(c->fd, c->req.head, status, allow, msg);
}

int api_send_text(struct api_conn *c, unsigned status, const char *content_type, char *text,
                  size_t len)
{
    return send_owned(c, status, content_type, NULL, text, len);
}

json_t *api_json_vm(const struct vmc_vm_info *info)
{
    return json_pack("{s:s,s:I,s:I,s:f,s:f,s:I,s:s}", "state", info->state, "vcpus",
                     (json_int_t)info->vcpus, "boot_memory", (json_int_t)info->boot_mem,
                     "uptime_s", info->uptime_s, "vmm_uptime_s", info->vmm_uptime_s, "reboots",
                     (json_int_t)info->reboots, "version", info->version);
}

json_t *api_json_virtio_mem(const struct vmc_virtio_mem_info *d)
{
    return json_pack("{s:s,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:s,s:I,s:I,s:I,s:I,s:I}", "id", d->id,
                     "node", (json_int_t)d->node, "addr", (json_int_t)d->addr, "region_size",
                     (json_int_t)d->region_size, "block_size", (json_int_t)d->block_size,
                     "page_size", (json_int_t)d->page_size, "usable_region_size", (json_int_t)d->usable_region_size, "plugged_size",
                     (json_int_t)d->plugged_size, "requested_size", (json_int_t)d->requested_size,
                     "driver_state", d->driver_state, "host_backed_bytes",
                     (json_int_t)d->host_backed_bytes, "host_backed_bound",
                     (json_int_t)d->host_backed_bound, "blocked_accesses",
                     (json_int_t)d->blocked_accesses, "memslots", (json_int_t)d->memslots,
                     "slot_size", (json_int_t)d->slot_size);
}

json_t *api_json_parse_object(const char *body, size_t len, const char *const *allowed,
                              char *err, size_t errlen)
{
    if (len == 0) {
        snprintf(err, errlen, "a JSON object is required as the request body");
        return NULL;
    }
    json_error_t jerr;
    json_t *obj = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!obj) {
        snprintf(err, errlen, "malformed JSON at line %d column %d: %s", jerr.line, jerr.column,
                 jerr.text);
        return NULL;
    }
    if (!json_is_object(obj)) {
        snprintf(err, errlen, "the body must be a JSON object");
        json_decref(obj);
        return NULL;
    }
    const char *key;
    json_t *value;
    json_object_foreach(obj, key, value) {
        bool known = false;
        for (const char *const *a = allowed; *a; a++)
            known |= !strcmp(*a, key);
        if (!known) {
            snprintf(err, errlen, "unknown field '%.100s'", key);
            json_decref(obj);
            return NULL;
        }
    }
    return obj;
}

int api_json_size(const char *name, json_t *value, uint64_t *out, char *err, size_t errlen)
{
    if (json_is_integer(value)) {
        json_int_t v = json_integer_value(value);
        if (v < 0) {
            snprintf(err, errlen, "%s: must not be negative", name);
            return -EINVAL;
        }
        *out = (uint64_t)v;
        return 0;
    }
    if (json_is_string(value)) {
        const char *why;
        if (strlen(json_string_value(value)) != json_string_length(value)) {
            snprintf(err, errlen, "%s: contains a NUL character", name);
            return -EINVAL;
        }
        if (size_parse(json_string_value(value), out, &why) != 0) {
            snprintf(err, errlen, "%s '%.64s': %s", name, json_string_value(value), why);
            return -EINVAL;
        }
        return 0;
    }
    snprintf(err, errlen, "%s: expected an integer number of bytes or a size string like \"8G\"",
             name);
    return -EINVAL;
}
