/* SPDX-License-Identifier: MIT */
/* Placeholder until the runtime lands (issue 2). */
#include "gtrace/gtrace.h"
