# The static half of the mixed-flags ODR test (tests/odr_a.cpp): no weak symbol of attend (a name
# containing "attend::", typeinfo and vtables included) may be defined by both object files, which
# are compiled with different target flags. A weak symbol defined twice is one the linker keeps a
# single copy of, for both translation units: the ODR violation that detail/abi.hpp's tagged
# namespace prevents. Where both objects have the same ABI tag (native is the baseline), shared
# symbols are expected and the check only reports them.
#
#   cmake -DNM=<nm> -DA=<object> -DB=<object> -P tests/odr_symbols.cmake
cmake_minimum_required(VERSION 3.21)  # IN_LIST
foreach(var NM A B)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "odr_symbols.cmake: pass -D${var}=...")
  endif()
endforeach()

# Weak definitions: W/w (weak), V/v (weak object), u (unique global: statics of inline functions).
function(weak_attend_symbols object out_var out_tags)
  execute_process(COMMAND "${NM}" -C --defined-only "${object}" OUTPUT_VARIABLE text RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "odr_symbols.cmake: ${NM} failed on ${object}")
  endif()
  string(REPLACE "\n" ";" lines "${text}")
  set(names "")
  set(tags "")
  foreach(line IN LISTS lines)
    if(line MATCHES "^[0-9a-fA-F]* *[WwVvu] (.*attend::.*)$")
      list(APPEND names "${CMAKE_MATCH_1}")
      if(CMAKE_MATCH_1 MATCHES "attend::(v[0-9]+_[0-9]+_[0-9]+_[A-Za-z0-9_]+_k[0-9]+)::")
        list(APPEND tags "${CMAKE_MATCH_1}")
      endif()
    endif()
  endforeach()
  list(REMOVE_DUPLICATES names)
  list(REMOVE_DUPLICATES tags)
  set(${out_var} "${names}" PARENT_SCOPE)
  set(${out_tags} "${tags}" PARENT_SCOPE)
endfunction()

weak_attend_symbols("${A}" a_names a_tags)
weak_attend_symbols("${B}" b_names b_tags)
list(LENGTH a_names a_count)
list(LENGTH b_names b_count)
message(STATUS "odr_symbols: ${A}: ${a_count} weak attend symbols, tags ${a_tags}")
message(STATUS "odr_symbols: ${B}: ${b_count} weak attend symbols, tags ${b_tags}")
if(a_count EQUAL 0 OR b_count EQUAL 0)
  message(FATAL_ERROR "odr_symbols.cmake: premise: both objects define weak attend symbols")
endif()

set(shared "")
foreach(name IN LISTS a_names)
  if(name IN_LIST b_names)
    list(APPEND shared "${name}")
  endif()
endforeach()
list(LENGTH shared shared_count)
if("${a_tags}" STREQUAL "${b_tags}")
  message(STATUS "odr_symbols: both objects have the ABI tag ${a_tags} (native is the baseline here): "
                 "${shared_count} shared weak symbols, as expected")
  return()
endif()
if(shared_count GREATER 0)
  list(SUBLIST shared 0 20 first)
  string(REPLACE ";" "\n  " first "${first}")
  message(FATAL_ERROR "odr_symbols: ${shared_count} weak attend symbols are defined by both objects, e.g.\n  ${first}")
endif()
message(STATUS "odr_symbols: no weak attend symbol is defined by both objects")
