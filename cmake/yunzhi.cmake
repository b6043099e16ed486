# Helpers every module uses, so that flags live on targets and not globally.
include_guard(GLOBAL)

# Applies the project's language level, warnings, CPU and sanitizer options to one target.
function(yunzhi_configure_target target)
  target_compile_features(${target} PUBLIC cxx_std_20)
  set_target_properties(${target} PROPERTIES CXX_EXTENSIONS OFF)
  target_compile_options(${target} PRIVATE -Wall -Wextra -Wno-unused-parameter)
  if(YUNZHI_WERROR)
    target_compile_options(${target} PRIVATE -Werror)
  endif()
  if(YUNZHI_NATIVE)
    target_compile_options(${target} PRIVATE -march=native)
  endif()
  if(YUNZHI_SANITIZE)
    target_compile_options(${target} PRIVATE -fsanitize=${YUNZHI_SANITIZE} -fno-omit-frame-pointer)
    target_link_options(${target} PUBLIC -fsanitize=${YUNZHI_SANITIZE})
  endif()
endfunction()

# yunzhi_add_library(<module> SOURCES ... [PUBLIC_DEPS ...] [PRIVATE_DEPS ...])
# Defines the static library yunzhi_<module> (alias yunzhi::<module>). Public headers live in
# include/yunzhi/<module>/; private headers beside the sources in src/<module>/.
function(yunzhi_add_library module)
  cmake_parse_arguments(ARG "" "" "SOURCES;PUBLIC_DEPS;PRIVATE_DEPS" ${ARGN})
  set(target yunzhi_${module})
  add_library(${target} STATIC ${ARG_SOURCES})
  add_library(yunzhi::${module} ALIAS ${target})
  target_include_directories(${target}
    PUBLIC ${PROJECT_SOURCE_DIR}/include
    PRIVATE ${PROJECT_SOURCE_DIR}/src)
  target_link_libraries(${target} PUBLIC ${ARG_PUBLIC_DEPS} PRIVATE ${ARG_PRIVATE_DEPS})
  yunzhi_configure_target(${target})
endfunction()

# yunzhi_add_test(<name> SOURCES ... DEPS ... [LABELS unit|integration|e2e|slow] [TIMEOUT s])
# One GoogleTest executable; each TEST becomes its own ctest entry carrying the labels.
function(yunzhi_add_test name)
  cmake_parse_arguments(ARG "" "TIMEOUT" "SOURCES;DEPS;LABELS" ${ARGN})
  if(NOT ARG_LABELS)
    set(ARG_LABELS unit)
  endif()
  if(NOT ARG_TIMEOUT)
    set(ARG_TIMEOUT 120)
  endif()
  add_executable(${name} ${ARG_SOURCES})
  target_include_directories(${name} PRIVATE ${PROJECT_SOURCE_DIR}/src ${PROJECT_SOURCE_DIR}/tests)
  target_link_libraries(${name} PRIVATE ${ARG_DEPS} GTest::gmock GTest::gtest_main)
  target_compile_definitions(${name} PRIVATE
    YUNZHI_SOURCE_DIR="${PROJECT_SOURCE_DIR}"
    YUNZHI_TESTDATA_DIR="${PROJECT_SOURCE_DIR}/../shared/testdata"
    YUNZHI_BINARY="$<TARGET_FILE:yunzhi>")
  yunzhi_configure_target(${name})
  gtest_discover_tests(${name}
    DISCOVERY_MODE PRE_TEST
    PROPERTIES LABELS "${ARG_LABELS}" TIMEOUT ${ARG_TIMEOUT})
endfunction()

# yunzhi_add_bench(<name> SOURCES ... DEPS ...): a Google Benchmark program (never run by ctest).
function(yunzhi_add_bench name)
  cmake_parse_arguments(ARG "" "" "SOURCES;DEPS" ${ARGN})
  add_executable(${name} ${ARG_SOURCES})
  target_link_libraries(${name} PRIVATE ${ARG_DEPS} benchmark::benchmark_main)
  yunzhi_configure_target(${name})
endfunction()
