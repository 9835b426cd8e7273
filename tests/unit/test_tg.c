/* test_tg.c — lib/tg.h, the Bot API client's transport: a client that cannot connect (without
 * leaking the token into its description), a client whose kept-alive connection closes after
 * the request went out (it must not send the request again), and replies read through the real
 * client. Reading replies alone is test_tg_reply.c. */
#define _GNU_SOURCE /* strcasestr */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tg.h"
#include "tg_assert.h"

/* ---- a client that cannot connect ------------------------------------------------------- */

/* A local TCP port that nothing listens on: bound, read, closed. */
static int closed_local_port(void)
{
	struct sockaddr_in sa;
	socklen_t salen = sizeof sa;
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	int port;

	assert_true(fd >= 0);
	memset(&sa, 0, sizeof sa);
	sa.sin_family = AF_INET;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	sa.sin_port = 0;
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &salen), 0);
	port = ntohs(sa.sin_port);
	close(fd);
	return port;
}

static int group_setup(void **state)
{
	static const char *const proxies[] = { "http_proxy", "HTTP_PROXY", "https_proxy",
					       "HTTPS_PROXY", "all_proxy", "ALL_PROXY" };
	size_t i;

	(void)state;
	/* the unreachable test must talk to 127.0.0.1 itself, not to a proxy */
	for (i = 0; i < sizeof proxies / sizeof proxies[0]; i++)
		unsetenv(proxies[i]);
	return tg_global_init();
}

static int group_teardown(void **state)
{
	(void)state;
	tg_global_cleanup();
	return 0;
}

static void closed_port_is_unreachable_and_the_token_stays_secret(void **state)
{
	char base[64];
	struct tg *tg;
	struct tg_result res;

	(void)state;
	snprintf(base, sizeof base, "http://127.0.0.1:%d", closed_local_port());
	tg = tg_new(base, SECRET_TOKEN, 2000);
	assert_non_null(tg);

	assert_int_equal(tg_send_message(tg, "12345", "Your OTP is <code>1234</code>", &res),
			 TG_UNREACHABLE);
	assert_int_equal(res.status, TG_UNREACHABLE);
	assert_int_equal(res.http_status, 0);
	assert_true(res.description[0] != '\0');
	assert_null(strstr(res.description, TOKEN_SECRET_PART));
	assert_null(strstr(res.description, "1234</code>"));

	assert_int_equal(tg_delete_message(tg, "12345", 77, &res), TG_UNREACHABLE);
	assert_int_equal(res.status, TG_UNREACHABLE);
	assert_true(res.description[0] != '\0');
	assert_null(strstr(res.description, TOKEN_SECRET_PART));
	tg_free(tg);
}

/* ---- a server that closes a kept-alive connection after reading a request --------------- */

/* A one-connection-at-a-time HTTP/1.1 server on loopback: it counts the requests it read in
 * full, answers each with reply and keeps the connection alive, except that it closes the
 * connection without answering after request number close_unanswered, and closes it after
 * answering request number close_answered. */
struct mini_server {
	int fd, port;
	int close_unanswered, close_answered;
	const char *reply;
	pthread_mutex_t lock;
	int requests;
	int closed; /* connections closed so far */
	int stop;
	pthread_t thread;
};

static int server_requests(struct mini_server *srv)
{
	int n;

	pthread_mutex_lock(&srv->lock);
	n = srv->requests;
	pthread_mutex_unlock(&srv->lock);
	return n;
}

static int server_stopping(struct mini_server *srv)
{
	int stop;

	pthread_mutex_lock(&srv->lock);
	stop = srv->stop;
	pthread_mutex_unlock(&srv->lock);
	return stop;
}

/* Waits up to 100 ms for fd to be readable: 1, 0 on timeout. */
static int readable(int fd)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };

	return poll(&p, 1, 100) > 0;
}

/* Reads one request (headers and Content-Length body) from c. 0, or -1 when the peer closed. */
static int read_request(struct mini_server *srv, int c)
{
	char buf[65536], *end, *cl;
	size_t n = 0, want;
	ssize_t r;

	for (;;) {
		while (!readable(c))
			if (server_stopping(srv))
				return -1;
		r = read(c, buf + n, sizeof buf - 1 - n);
		if (r <= 0)
			return -1;
		n += (size_t)r;
		buf[n] = '\0';
		end = strstr(buf, "\r\n\r\n");
		if (end == NULL)
			continue;
		cl = strcasestr(buf, "\r\nContent-Length:");
		want = (size_t)(end + 4 - buf) + (cl != NULL ? strtoul(cl + 17, NULL, 10) : 0);
		if (n >= want)
			return 0;
	}
}

static void *serve(void *arg)
{
	struct mini_server *srv = arg;
	char head[256];
	int c, nth;

	while (!server_stopping(srv)) {
		if (!readable(srv->fd))
			continue;
		c = accept(srv->fd, NULL, NULL);
		if (c < 0)
			continue;
		while (read_request(srv, c) == 0) {
			pthread_mutex_lock(&srv->lock);
			nth = ++srv->requests;
			pthread_mutex_unlock(&srv->lock);
			if (nth == srv->close_unanswered)
				break;
			snprintf(head, sizeof head,
				 "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
				 "Content-Length: %zu\r\n\r\n", strlen(srv->reply));
			if (write(c, head, strlen(head)) < 0 ||
			    write(c, srv->reply, strlen(srv->reply)) < 0 || nth == srv->close_answered)
				break;
		}
		shutdown(c, SHUT_RDWR);
		close(c);
		pthread_mutex_lock(&srv->lock);
		srv->closed++;
		pthread_mutex_unlock(&srv->lock);
	}
	return NULL;
}

/* Waits (up to 5 s) until the server has closed n connections. */
static void server_wait_closed(struct mini_server *srv, int n)
{
	int i, closed = 0;

	for (i = 0; i < 5000; i++) {
		pthread_mutex_lock(&srv->lock);
		closed = srv->closed;
		pthread_mutex_unlock(&srv->lock);
		if (closed >= n)
			return;
		usleep(1000);
	}
	fail_msg("the server closed %d connections, not %d", closed, n);
}

static void server_start(struct mini_server *srv, const char *reply, int close_unanswered,
			 int close_answered)
{
	struct sockaddr_in sa;
	socklen_t salen = sizeof sa;
	int one = 1;

	memset(srv, 0, sizeof *srv);
	srv->reply = reply;
	srv->close_unanswered = close_unanswered;
	srv->close_answered = close_answered;
	pthread_mutex_init(&srv->lock, NULL);
	srv->fd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(srv->fd >= 0);
	setsockopt(srv->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	memset(&sa, 0, sizeof sa);
	sa.sin_family = AF_INET;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(srv->fd, (struct sockaddr *)&sa, sizeof sa), 0);
	assert_int_equal(listen(srv->fd, 16), 0);
	assert_int_equal(getsockname(srv->fd, (struct sockaddr *)&sa, &salen), 0);
	srv->port = ntohs(sa.sin_port);
	assert_int_equal(pthread_create(&srv->thread, NULL, serve, srv), 0);
}

static void server_stop(struct mini_server *srv)
{
	pthread_mutex_lock(&srv->lock);
	srv->stop = 1;
	pthread_mutex_unlock(&srv->lock);
	pthread_join(srv->thread, NULL);
	close(srv->fd);
	pthread_mutex_destroy(&srv->lock);
}

static struct tg *client_of(const struct mini_server *srv)
{
	char base[64];
	struct tg *tg;

	snprintf(base, sizeof base, "http://127.0.0.1:%d", srv->port);
	tg = tg_new(base, SECRET_TOKEN, 2000);
	assert_non_null(tg);
	return tg;
}

/* libcurl 7.88 sends a POST again on a fresh connection when a kept-alive one closes after the
 * request went out (FACTS.md): two codes delivered, the first one's id unknown. The client must
 * stop at one request and say that the answer was lost. */
static void closed_after_the_request_is_no_answer_and_never_repeated(void **state)
{
	struct mini_server srv;
	struct tg_result res;
	struct tg *tg;

	(void)state;
	server_start(&srv, "{\"ok\":true,\"result\":{\"message_id\":5}}", 2, 0);
	tg = client_of(&srv);
	assert_int_equal(tg_send_message(tg, "12345", "Your OTP is <code>1234</code>", &res), TG_OK);
	assert_int_equal(res.message_id, 5);
	assert_int_equal(server_requests(&srv), 1);

	/* the second goes over the kept-alive connection, which the server closes unanswered */
	assert_int_equal(tg_send_message(tg, "12345", "Your OTP is <code>5678</code>", &res),
			 TG_NO_ANSWER);
	assert_int_equal(server_requests(&srv), 2);
	assert_int_equal(res.http_status, 0);
	assert_clean(res.description);

	/* the next call opens a fresh connection and works */
	assert_int_equal(tg_send_message(tg, "12345", "Your OTP is <code>9999</code>", &res), TG_OK);
	assert_int_equal(server_requests(&srv), 3);
	tg_free(tg);
	server_stop(&srv);
}

/* A deletion may be repeated (a second one is answered "not found"): there curl's repeat on a
 * fresh connection is welcome, and saves a retry round. */
static void a_deletion_is_repeated_on_a_fresh_connection(void **state)
{
	struct mini_server srv;
	struct tg_result res;
	struct tg *tg;

	(void)state;
	server_start(&srv, "{\"ok\":true,\"result\":true}", 2, 0);
	tg = client_of(&srv);
	assert_int_equal(tg_delete_message(tg, "12345", 1, &res), TG_OK);
	assert_int_equal(tg_delete_message(tg, "12345", 2, &res), TG_OK);
	assert_int_equal(server_requests(&srv), 3); /* the second twice: closed, then answered */
	tg_free(tg);
	server_stop(&srv);
}

/* A kept-alive connection the server closed while idle is found dead before the request: the
 * request goes over a fresh connection, once. */
static void idle_connection_closed_by_the_server_is_replaced(void **state)
{
	struct mini_server srv;
	struct tg_result res;
	struct tg *tg;
	int i;

	(void)state;
	server_start(&srv, "{\"ok\":true,\"result\":{\"message_id\":6}}", 0, 1);
	tg = client_of(&srv);
	for (i = 1; i <= 3; i++) {
		assert_int_equal(tg_send_message(tg, "12345", "<code>1234</code>", &res), TG_OK);
		assert_int_equal(server_requests(&srv), i);
		if (i == 1) /* closed while idle: not between the answer and the next request */
			server_wait_closed(&srv, 1);
	}
	assert_int_equal(tg_delete_message(tg, "12345", 6, &res), TG_BAD_REPLY); /* result not true */
	assert_int_equal(server_requests(&srv), 4);
	tg_free(tg);
	server_stop(&srv);
}

/* What a hostile upstream says reaches the caller cleaned, through the real client. */
static void a_hostile_description_arrives_clean(void **state)
{
	static const char reply[] =
		"{\"ok\":false,\"error_code\":400,\"description\":\"Bad Request: bot"
		SECRET_TOKEN " \\u001b[2J\\n\\u202eSECRETTOK\"}";
	struct mini_server srv;
	struct tg_result res;
	struct tg *tg;

	(void)state;
	server_start(&srv, reply, 0, 0);
	tg = client_of(&srv);
	assert_int_equal(tg_send_message(tg, "12345", "<code>1234</code>", &res), TG_REFUSED);
	assert_int_equal(res.error_code, 400);
	assert_clean(res.description);
	assert_string_equal(res.description, "Bad Request: bot123456:***  [2J  ***");
	tg_free(tg);
	server_stop(&srv);
}

/* A reply is collected in a buffer that grows as it arrives: a long one (sendMessage echoes the
 * text) is read whole, one over 64 KiB is refused as a bad reply. */
static void a_long_reply_is_read_whole_and_a_huge_one_refused(void **state)
{
	static const char head[] = "{\"ok\":true,\"result\":{\"message_id\":7,\"text\":\"";
	size_t sizes[] = { 5000, 70000 }, n, k;
	struct mini_server srv;
	struct tg_result res;
	struct tg *tg;
	char *reply;

	(void)state;
	for (k = 0; k < 2; k++) {
		reply = malloc(sizes[k] + 64);
		assert_non_null(reply);
		n = (size_t)sprintf(reply, "%s", head);
		memset(reply + n, 'x', sizes[k]);
		strcpy(reply + n + sizes[k], "\"}}");
		server_start(&srv, reply, 0, 0);
		tg = client_of(&srv);
		if (k == 0) {
			assert_int_equal(tg_send_message(tg, "12345", "<code>1234</code>", &res),
					 TG_OK);
			assert_int_equal(res.message_id, 7);
		} else {
			assert_int_equal(tg_send_message(tg, "12345", "<code>1234</code>", &res),
					 TG_BAD_REPLY);
			assert_string_equal(res.description, "reply larger than 65536 bytes");
		}
		tg_free(tg);
		server_stop(&srv);
		free(reply);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(closed_port_is_unreachable_and_the_token_stays_secret),
		cmocka_unit_test(closed_after_the_request_is_no_answer_and_never_repeated),
		cmocka_unit_test(idle_connection_closed_by_the_server_is_replaced),
		cmocka_unit_test(a_deletion_is_repeated_on_a_fresh_connection),
		cmocka_unit_test(a_hostile_description_arrives_clean),
		cmocka_unit_test(a_long_reply_is_read_whole_and_a_huge_one_refused),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
