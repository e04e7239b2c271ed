// Swift's view of hwloc 2.x. Only the Machine module imports this.
#ifndef LOWBIT_CHWLOC_SHIM_H
#define LOWBIT_CHWLOC_SHIM_H

#include <errno.h>
#include <hwloc.h>

// The API version the headers were built for (a macro Swift sees as a plain integer,
// wrapped so the Swift side can compare it with the runtime's hwloc_get_api_version()).
static inline unsigned lowbit_hwloc_header_api_version(void) { return HWLOC_API_VERSION; }

// Binding flags are enum constants of type hwloc_cpubind_flags_t but the API takes int.
static inline int lowbit_hwloc_cpubind_thread(void) { return HWLOC_CPUBIND_THREAD; }
static inline int lowbit_hwloc_cpubind_strict(void) { return HWLOC_CPUBIND_STRICT; }

// errno as left by the last failing hwloc call.
static inline int lowbit_errno(void) { return errno; }

#endif
