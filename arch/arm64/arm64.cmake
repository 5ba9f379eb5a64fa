# The arm64-neutral parts of arch/arm64/ (address map, Image header, boot
# plan, device tree) and their unit tests, included from the top-level
# CMakeLists.txt after the unit tests are defined.
#
# On arm64 they are part of minivmm_core. On other hosts they build as
# minivmm_arm64_pure, with libfdt (minivmm_fdt), for the unit tests named
# test_fdt* and test_arm64_* in tests/unit/: they run on the x86_64 CI
# machine; libfdt is then required on every host.
set(MINIVMM_ARM64_PURE_SOURCES
    ${CMAKE_SOURCE_DIR}/arch/arm64/boot_plan.c
    ${CMAKE_SOURCE_DIR}/arch/arm64/fdt.c
    ${CMAKE_SOURCE_DIR}/arch/arm64/image.c
    ${CMAKE_SOURCE_DIR}/arch/arm64/layout.c)

if(MINIVMM_ARCH STREQUAL "arm64")
  set(MINIVMM_ARM64_PURE minivmm_core)
else()
  if(NOT MINIVMM_HAVE_FDT)
    message(FATAL_ERROR "libfdt not found: the arm64 device tree's unit tests need it on every "
                        "host (Debian: libfdt-dev)")
  endif()
  add_library(minivmm_arm64_pure STATIC ${MINIVMM_ARM64_PURE_SOURCES})
  target_include_directories(minivmm_arm64_pure PUBLIC ${CMAKE_SOURCE_DIR})
  target_link_libraries(minivmm_arm64_pure PUBLIC minivmm_fdt)
  set(MINIVMM_ARM64_PURE minivmm_arm64_pure)
endif()

file(GLOB MINIVMM_ARM64_UNIT_TESTS CONFIGURE_DEPENDS
     ${CMAKE_SOURCE_DIR}/tests/unit/test_fdt*.c
     ${CMAKE_SOURCE_DIR}/tests/unit/test_arm64_*.c)
foreach(test_src ${MINIVMM_ARM64_UNIT_TESTS})
  get_filename_component(test_name ${test_src} NAME_WE)
  target_link_libraries(${test_name} PRIVATE ${MINIVMM_ARM64_PURE})
endforeach()
