# arm64 pieces of the build, included from the top-level CMakeLists.txt after
# the unit tests are defined.
#
# libfdt builds the guest's device tree (arch/arm64/fdt.c). On arm64 it is
# part of minivmm_core. On other hosts the arch-neutral arm64 code (address
# map, Image header, boot plan, device tree) still builds, as
# minivmm_arm64_pure, for the unit tests named test_fdt* and test_arm64_*:
# they run on the x86_64 CI machine.
#
# Debian's libfdt1 has only libfdt.so.1 (the .so link comes with libfdt-dev,
# whose headers serve every architecture), hence the second name.
find_path(LIBFDT_INCLUDE_DIR libfdt.h REQUIRED)
find_library(LIBFDT_LIBRARY NAMES fdt libfdt.so.1 REQUIRED
             HINTS /usr/lib/${CMAKE_LIBRARY_ARCHITECTURE})

set(MINIVMM_ARM64_PURE_SOURCES
    ${CMAKE_SOURCE_DIR}/arch/arm64/boot_plan.c
    ${CMAKE_SOURCE_DIR}/arch/arm64/fdt.c
    ${CMAKE_SOURCE_DIR}/arch/arm64/image.c
    ${CMAKE_SOURCE_DIR}/arch/arm64/layout.c)

if(MINIVMM_ARCH STREQUAL "arm64")
  target_include_directories(minivmm_core PUBLIC ${LIBFDT_INCLUDE_DIR})
  target_link_libraries(minivmm_core PUBLIC ${LIBFDT_LIBRARY})
  set(MINIVMM_ARM64_PURE minivmm_core)
else()
  add_library(minivmm_arm64_pure STATIC ${MINIVMM_ARM64_PURE_SOURCES})
  target_include_directories(minivmm_arm64_pure PUBLIC ${CMAKE_SOURCE_DIR} ${LIBFDT_INCLUDE_DIR})
  target_link_libraries(minivmm_arm64_pure PUBLIC ${LIBFDT_LIBRARY})
  set(MINIVMM_ARM64_PURE minivmm_arm64_pure)
endif()

file(GLOB MINIVMM_ARM64_UNIT_TESTS CONFIGURE_DEPENDS
     ${CMAKE_SOURCE_DIR}/tests/unit/test_fdt*.c
     ${CMAKE_SOURCE_DIR}/tests/unit/test_arm64_*.c)
foreach(test_src ${MINIVMM_ARM64_UNIT_TESTS})
  get_filename_component(test_name ${test_src} NAME_WE)
  target_link_libraries(${test_name} PRIVATE ${MINIVMM_ARM64_PURE})
endforeach()
