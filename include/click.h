/* click: the click redirect. GET /click/{offer}?wm=…&sub1=… records a click
 * under a fresh random UUID (version 4) and answers 302 to the offer's
 * landing URL with the click id added in the offer's click parameter
 * (default click_id); the landing URL keeps its own query and fragment:
 *   https://shop.example/x?lang=en#top -> https://shop.example/x?lang=en&click_id=UUID#top
 * The advertiser sends that id back in its postbacks (postback.h).
 *
 * The click row: offer, wm (the webmaster: a positive integer, else 400),
 * subs (every other query parameter, up to CLICK_SUBS_MAX of them, names up
 * to 64 and values up to 255 bytes, as a JSON object of strings; bytes that
 * are not UTF-8 written as \xNN), the client's address and User-Agent.
 * Unknown or disabled offer, or one without a landing URL: 404. HEAD is
 * refused (405): link checkers must not make clicks.
 *
 * Clicks are db jobs of one group function: the clicks queued together are
 * inserted by one statement, one commit, and each redirect leaves after it.
 * Database unreachable: 503 with Retry-After. Loop thread only. */
#ifndef LEADSYNC_CLICK_H
#define LEADSYNC_CLICK_H

#include "db.h"
#include "listener.h"

#define CLICK_SUBS_MAX 20

/* The route handler; data is the struct db. */
void click_handle(struct listener_req *req, void *data);

/* Writes a random version-4 UUID ("c7e2206f-03af-49fa-9046-dd6aeaa44e9b")
 * into out. Returns 0, or -1 when the system has no randomness to give. */
__attribute__((warn_unused_result))
int click_uuid(char out[37]);

/* Reads a UUID in any case into its canonical lower-case form in out;
 * false when s is not one (8-4-4-4-12 hex digits). */
bool click_uuid_parse(const char *s, char out[37]);

#endif
