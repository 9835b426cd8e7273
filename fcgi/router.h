/* router.h — the table of routes: path, then method (405 with Allow), then the API key (401),
 * then the body, read only now (408 when it does not arrive in time), its length (413), content
 * type (415), in that order: the first failing check answers. */
#ifndef OTP_ROUTER_H
#define OTP_ROUTER_H

#include "app.h"
#include "http.h"

/* The path as a metric label: a route's path, or "other" (bounded label values). */
const char *router_metric_path(const char *path);

/* Answers req into resp by the route table. */
void router_dispatch(struct worker *w, struct request *req, struct response *resp);

#endif
