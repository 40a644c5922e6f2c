/* The host of handles.c compiled as C++17: the header must work from C++ too. */
#include "handles.c"
