# The API reference: a `docs` target that runs doxygen over the public headers (include/attend/*.hpp,
# not detail/) and docs/mainpage.md, writing HTML to <build dir>/docs/html. Any doxygen warning (an
# undocumented public entity, a missing @param, a broken reference) fails the target.
#
#   cmake -S . -B build-docs -DATTEND_BUILD_DOCS=ON && cmake --build build-docs --target docs
#
# ATTEND_BUILD_DOCS defaults to ON only when attend is the top-level project and doxygen is installed.
# The target is never part of `all`. A missing doxygen never breaks a configure: with the option ON
# and no doxygen, the `docs` target exists but fails, saying what to install.
# Included from the root CMakeLists.txt.

find_package(Doxygen QUIET)  # sets DOXYGEN_FOUND and DOXYGEN_EXECUTABLE (FindDoxygen)

set(attend_docs_default OFF)
if(PROJECT_IS_TOP_LEVEL AND DOXYGEN_FOUND)
  set(attend_docs_default ON)
endif()
option(ATTEND_BUILD_DOCS "Define the 'docs' target: the API reference with doxygen (not built by 'all')"
       ${attend_docs_default})
# Doxygen's WARN_AS_ERROR: FAIL_ON_WARNINGS reports every warning, then fails; YES stops at the first.
set(ATTEND_DOCS_WARN_AS_ERROR "FAIL_ON_WARNINGS" CACHE STRING
    "Doxygen's WARN_AS_ERROR for the docs target: FAIL_ON_WARNINGS, YES or NO")
set_property(CACHE ATTEND_DOCS_WARN_AS_ERROR PROPERTY STRINGS FAIL_ON_WARNINGS YES NO)

if(ATTEND_BUILD_DOCS)
  if(DOXYGEN_FOUND)
    set(ATTEND_DOCS_OUTPUT_DIR "${PROJECT_BINARY_DIR}/docs")
    configure_file("${PROJECT_SOURCE_DIR}/docs/Doxyfile.in" "${ATTEND_DOCS_OUTPUT_DIR}/Doxyfile" @ONLY)
    file(GLOB attend_docs_inputs CONFIGURE_DEPENDS
         "${PROJECT_SOURCE_DIR}/include/attend/*.hpp" "${PROJECT_SOURCE_DIR}/docs/*.md")
    # The stamp is written only when doxygen succeeds, so a failed run is retried on the next build.
    add_custom_command(
      OUTPUT "${ATTEND_DOCS_OUTPUT_DIR}/html.stamp"
      COMMAND "${CMAKE_COMMAND}" -E rm -rf "${ATTEND_DOCS_OUTPUT_DIR}/html"
      COMMAND Doxygen::doxygen "${ATTEND_DOCS_OUTPUT_DIR}/Doxyfile"
      COMMAND "${CMAKE_COMMAND}" -E touch "${ATTEND_DOCS_OUTPUT_DIR}/html.stamp"
      DEPENDS "${ATTEND_DOCS_OUTPUT_DIR}/Doxyfile" ${attend_docs_inputs}
      WORKING_DIRECTORY "${PROJECT_SOURCE_DIR}"
      COMMENT "attend: API reference with doxygen ${DOXYGEN_VERSION} -> ${ATTEND_DOCS_OUTPUT_DIR}/html/index.html"
      VERBATIM)
    add_custom_target(docs DEPENDS "${ATTEND_DOCS_OUTPUT_DIR}/html.stamp")
  else()
    message(WARNING "attend: ATTEND_BUILD_DOCS is ON but doxygen was not found; "
                    "the 'docs' target will fail (Debian: apt-get install doxygen)")
    add_custom_target(docs
      COMMAND "${CMAKE_COMMAND}" -E echo "attend: doxygen not found; install it (Debian: apt-get install doxygen) and reconfigure"
      COMMAND "${CMAKE_COMMAND}" -E false
      VERBATIM)
  endif()
endif()
