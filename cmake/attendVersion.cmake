# attend_read_version(<header> <out-var>): sets <out-var> to "MAJOR.MINOR.PATCH" parsed from the
# ATTEND_VERSION_* macros of include/attend/version.hpp, the version's single home.
function(attend_read_version header out_var)
  file(STRINGS "${header}" lines REGEX "^#define ATTEND_VERSION_(MAJOR|MINOR|PATCH) [0-9]+$")
  foreach(part MAJOR MINOR PATCH)
    string(REGEX MATCH "ATTEND_VERSION_${part} ([0-9]+)" _ "${lines}")
    set(${part} "${CMAKE_MATCH_1}")
    if(${part} STREQUAL "")
      message(FATAL_ERROR "attend: cannot read ATTEND_VERSION_${part} from ${header}")
    endif()
  endforeach()
  set(${out_var} "${MAJOR}.${MINOR}.${PATCH}" PARENT_SCOPE)
endfunction()
