/* ctx: what gateway/ctx.h declares that needs libuv: the loop's clock. */
#include "gateway/gw.h"

uint64_t gw_now(const gw_ctx *ctx)
{
    return uv_now(ctx->loop);
}
