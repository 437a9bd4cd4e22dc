/*
 * gw: the gateway layer for code that runs the loop (the drivers' shells and main): the context
 * (gateway/ctx.h) together with libuv.
 */
#ifndef SLUICE_GW_H
#define SLUICE_GW_H

#include <uv.h>

#include "gateway/ctx.h"

#endif
