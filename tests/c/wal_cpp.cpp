/* The host of wal.c compiled as C++17: the header must work from C++ too. */
#include "wal.c"
