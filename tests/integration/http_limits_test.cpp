#include "harness.h"

using namespace spry::test;
