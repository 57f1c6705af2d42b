/* intake: POST /api/leads, how a network's order system registers the leads
 * it has sent to a CRM, so that the poller checks them.
 *
 * Authorization: Bearer <LEADSYNC_ADMIN_TOKEN>, compared in constant time;
 * missing or wrong: 401. With no token configured the route answers 404
 * "intake is disabled".
 *
 * Body: one JSON lead object, or an array of 1..INTAKE_MAX_LEADS of them,
 * with the fields of `leadsync import`'s lead record (offer, ext or id,
 * status, created, and optionally click_id, goal, base, request_id, ...;
 * include/import.h). Each lead is validated and written exactly as import
 * does it (import's record API: import_lead_check(), import_lead_add(),
 * import_commit()), all in one transaction: one bad lead and nothing is
 * written (400 naming it: "lead 2: lead: 'status' must be ..."). The
 * answer lists the ids in the order given: {"ok":true,"leads":[1001,1002]}.
 * Database unreachable: 503 with Retry-After. Loop thread only. */
#ifndef LEADSYNC_INTAKE_H
#define LEADSYNC_INTAKE_H

#include "db.h"
#include "listener.h"

#define INTAKE_MAX_LEADS 1000

/* The route's data. token NULL or "": the route is closed. */
struct intake {
	struct db *db;
	const char *token;
};

/* The route handler; data is a struct intake that outlives the listener. */
void intake_handle(struct listener_req *req, void *data);

#endif
