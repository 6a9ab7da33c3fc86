// The Catch2 v2 main, compiled once and shared by the agent tests.
#define CATCH_CONFIG_MAIN
#include <catch2/catch.hpp>
