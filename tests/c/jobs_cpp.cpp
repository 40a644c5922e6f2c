/* The host of jobs.c compiled as C++17: the header must work from C++ too. */
#include "jobs.c"
