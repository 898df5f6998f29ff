# keng_library(NAME SOURCES file... [LINKS target...] [FAILPOINTS])
#
# One folder, one static library. The folder is the library's door: its headers are what the
# libraries that link it may include, and nothing else is on their include path. A library
# links only the libraries below it, so an include that climbs the layers, or crosses to a
# sibling, fails to compile:
#
#   consumers/aggregate -> consumers/consumer -> consumers/alerts -> consumers/counts -> common
#   consumers/review -> consumers/counts -> common
#   producers/ingest, producers/import, producers/simulate -> producers/producer -> common
#
# A folder's internal.h is shared by the files of that folder alone: a quoted include looks in
# the including file's own folder first, so "internal.h" is always the folder's own.
#
# FAILPOINTS: the folder has crash points (common/failpoint.h). Such a library, and every
# library above it, also gets a twin NAME_failpoints built with KENG_FAILPOINTS and linked to
# the twins below it, for the test copies of the programs in build/test-bin/. The twins are
# built only when a test copy needs them; the libraries of the real programs have no crash
# points at all.
# keng_twin_links(OUT HAS_TWIN LINK...): LINK... with each library that has a crash-point twin
# replaced by the twin, into OUT; HAS_TWIN says whether any had one.
function(keng_twin_links out has_twin)
    set(links "")
    set(any FALSE)
    foreach(lib IN LISTS ARGN)
        if(TARGET ${lib}_failpoints)
            list(APPEND links ${lib}_failpoints)
            set(any TRUE)
        else()
            list(APPEND links ${lib})
        endif()
    endforeach()
    set(${out} "${links}" PARENT_SCOPE)
    set(${has_twin} ${any} PARENT_SCOPE)
endfunction()

function(keng_library name)
    cmake_parse_arguments(PARSE_ARGV 1 arg "FAILPOINTS" "" "SOURCES;LINKS")
    if(arg_UNPARSED_ARGUMENTS)
        message(FATAL_ERROR "keng_library(${name}): unexpected ${arg_UNPARSED_ARGUMENTS}")
    endif()
    add_library(${name} STATIC ${arg_SOURCES})
    target_include_directories(${name} PUBLIC ${CMAKE_CURRENT_SOURCE_DIR})
    target_link_libraries(${name} PUBLIC ${arg_LINKS})

    keng_twin_links(twin_links has_twin_below ${arg_LINKS})
    if(arg_FAILPOINTS OR has_twin_below)
        add_library(${name}_failpoints STATIC EXCLUDE_FROM_ALL ${arg_SOURCES})
        target_include_directories(${name}_failpoints PUBLIC ${CMAKE_CURRENT_SOURCE_DIR})
        target_compile_definitions(${name}_failpoints PRIVATE KENG_FAILPOINTS)
        target_link_libraries(${name}_failpoints PUBLIC ${twin_links})
        if(arg_FAILPOINTS)
            target_link_libraries(${name}_failpoints PUBLIC keng_failpoint)
        endif()
    endif()
endfunction()

# keng_program(NAME SOURCES file... LINKS target...)
#
# A program in build/bin/. When one of its libraries has a crash-point twin, the program also
# gets a test copy of the same name in build/test-bin/, linked to the twins and built with
# KENG_FAILPOINTS itself (for crash points in the program's own sources).
function(keng_program name)
    cmake_parse_arguments(PARSE_ARGV 1 arg "FAILPOINTS" "" "SOURCES;LINKS")
    add_executable(${name} ${arg_SOURCES})
    target_link_libraries(${name} PRIVATE ${arg_LINKS})

    keng_twin_links(twin_links has_twin ${arg_LINKS})
    if(arg_FAILPOINTS OR has_twin)
        add_executable(${name}-failpoints ${arg_SOURCES})
        target_compile_definitions(${name}-failpoints PRIVATE KENG_FAILPOINTS)
        target_link_libraries(${name}-failpoints PRIVATE ${twin_links} keng_failpoint)
        set_target_properties(${name}-failpoints PROPERTIES OUTPUT_NAME ${name}
            RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/test-bin)
    endif()
endfunction()
