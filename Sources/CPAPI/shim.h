// Swift's view of PAPI 7. Only the Machine module imports this.
// PAPI_VER_CURRENT and the preset event codes are macros built from casts and masks,
// which Swift cannot import; these wrappers return their values.
#ifndef LOWBIT_CPAPI_SHIM_H
#define LOWBIT_CPAPI_SHIM_H

#include <papi.h>

static inline int lowbit_papi_ver_current(void) { return PAPI_VER_CURRENT; }
static inline int lowbit_papi_version(void) { return PAPI_VERSION; }
static inline int lowbit_papi_version_major(int v) { return PAPI_VERSION_MAJOR(v); }
static inline int lowbit_papi_version_minor(int v) { return PAPI_VERSION_MINOR(v); }
static inline int lowbit_papi_version_revision(int v) { return PAPI_VERSION_REVISION(v); }
static inline int lowbit_papi_version_increment(int v) { return PAPI_VERSION_INCREMENT(v); }

// Preset events lowbit prefers (hardware).
static inline int lowbit_papi_tot_cyc(void) { return PAPI_TOT_CYC; }
static inline int lowbit_papi_tot_ins(void) { return PAPI_TOT_INS; }
static inline int lowbit_papi_l1_dcm(void) { return PAPI_L1_DCM; }
static inline int lowbit_papi_l2_dcm(void) { return PAPI_L2_DCM; }
static inline int lowbit_papi_l3_tcm(void) { return PAPI_L3_TCM; }
static inline int lowbit_papi_br_msp(void) { return PAPI_BR_MSP; }
static inline int lowbit_papi_vec_ins(void) { return PAPI_VEC_INS; }
static inline int lowbit_papi_vec_sp(void) { return PAPI_VEC_SP; }
static inline int lowbit_papi_vec_dp(void) { return PAPI_VEC_DP; }

#endif
