/* The host of telemetry.c compiled as C++17: the header must work from C++ too. */
#include "telemetry.c"
