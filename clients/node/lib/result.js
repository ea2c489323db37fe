'use strict';

// The answer of a call as the app reads it: camelCase fields, enum names
// without their prefix, the raw message beside them.

const strip = (prefix) => (name) => (typeof name === 'string' && name.startsWith(prefix) ? name.slice(prefix.length) : name);
const method = strip('RESOLUTION_METHOD_');
const kind = strip('EVIDENCE_KIND_');
const reason = strip('REJECTION_REASON_');
const state = strip('CONSENT_STATE_');

function identityOf(id) {
  if (!id) return null;
  return {
    clientId: id.client_id,
    sessionId: id.session_id,
    sessionNumber: id.session_number,
    userId: id.user_id,
    firstSeenUnixSeconds: id.first_seen_unix_seconds,
    lastSeenUnixSeconds: id.last_seen_unix_seconds,
  };
}

function consentOf(c) {
  if (!c) return null;
  return {
    analyticsStorage: state(c.analytics_storage),
    adStorage: state(c.ad_storage),
    adUserData: state(c.ad_user_data),
    adPersonalization: state(c.ad_personalization),
  };
}

function rejectedOf(list) {
  return (list || []).map((r) => ({ kind: kind(r.kind), reason: reason(r.reason), field: r.field, detail: r.detail }));
}

function cookieHeaders(cookies) {
  return (cookies || []).map((c) => c.set_cookie_header).filter(Boolean);
}

/** A ResolveSessionResponse as the app reads it. */
function resultOf(r) {
  const id = identityOf(r.identity) || {};
  return {
    clientId: id.clientId ?? '',
    sessionId: id.sessionId ?? 0,
    sessionNumber: id.sessionNumber ?? 0,
    userId: id.userId ?? '',
    firstSeenUnixSeconds: id.firstSeenUnixSeconds ?? 0,
    lastSeenUnixSeconds: id.lastSeenUnixSeconds ?? 0,
    method: method(r.method),
    confidence: Number(r.confidence),
    newSession: Boolean(r.new_session),
    newClient: Boolean(r.new_client),
    persisted: Boolean(r.persisted),
    rejected: rejectedOf(r.rejected),
    consent: consentOf(r.consent),
    cleanUrl: r.clean_url || '',
    cookies: cookieHeaders(r.cookies),
    response: r,
  };
}

module.exports = { resultOf, identityOf, consentOf, rejectedOf, cookieHeaders, method, state };
