# Turns one file into a C header that defines it as a byte array, NUL-terminated so that it
# is also a C string, for a program that must serve the file without files beside it:
#   static const char NAME[] = {...};   (sizeof(NAME) - 1 is the file's length)
# Run as: cmake -DINPUT=file -DOUTPUT=header.h -DNAME=c_identifier -P embed_file.cmake
foreach(var INPUT OUTPUT NAME)
    if(NOT DEFINED ${var})
        message(FATAL_ERROR "embed_file.cmake: -D${var}=... is required")
    endif()
endforeach()
if(NOT NAME MATCHES "^[A-Za-z_][A-Za-z0-9_]*$")
    message(FATAL_ERROR "embed_file.cmake: NAME '${NAME}' is not a C identifier")
endif()
file(READ ${INPUT} hex HEX)
# Sixteen bytes a line keeps the generated file readable in a diff or a debugger.
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
# (CMake regular expressions have no {n} repetition, hence string(REPEAT).)
string(REPEAT "0x[0-9a-f][0-9a-f]," 16 line_pattern)
string(REGEX REPLACE "(${line_pattern})" "\\1\n    " bytes "${bytes}")
get_filename_component(input_name ${INPUT} NAME)
file(WRITE ${OUTPUT}.tmp "/* Generated from ${input_name} by cmake/embed_file.cmake. */\n"
    "static const char ${NAME}[] = {\n    ${bytes}0x00};\n")
file(RENAME ${OUTPUT}.tmp ${OUTPUT})
