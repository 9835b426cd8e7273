/* tg_exchange.h — inside the Bot API client only (tg.c and tg_batch.c): one call's exchange
 * with the Bot API over a curl easy handle, whether the handle runs alone (tg.c's single
 * calls) or beside others in a multi handle (tg_batch.c). */
#ifndef OTP_TG_EXCHANGE_H
#define OTP_TG_EXCHANGE_H

#include <curl/curl.h>

#include "tg.h"

/* The request body, handed to curl as it asks for it, and the reply as it arrives. */
struct tg_exchange;

/* An exchange posting body (not owned: it must outlive the exchange) for method. A sendMessage
 * is never sent twice (see tg_send_message). NULL when out of memory. */
struct tg_exchange *tg_exchange_new(const char *body, enum tg_method method);

/* Wipes the reply it holds and frees it. NULL is allowed. */
void tg_exchange_free(struct tg_exchange *ex);

/* The method's URL, with the token in it: free it with secmem_free_str(). NULL when out of
 * memory. */
char *tg_method_url(const struct tg *tg, enum tg_method method);

/* Points easy at one POST of ex's body to url with tg's settings. The handle keeps pointers to
 * ex and errbuf (CURL_ERROR_SIZE bytes) until tg_exchange_conclude(). */
void tg_exchange_prepare(const struct tg *tg, CURL *easy, const char *url,
			 struct tg_exchange *ex, char *errbuf);

/* Turns easy's finished transfer (rc) of method into res, duration included; wipes the reply
 * and drops the handle's pointers to ex and errbuf, so that the handle can be reused. */
void tg_exchange_conclude(const struct tg *tg, enum tg_method method, CURL *easy, CURLcode rc,
			  struct tg_exchange *ex, const char *errbuf, struct tg_result *res);

#endif
