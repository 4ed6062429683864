import { describe, expect, it } from "vitest";
import { authHeaders, describeIdentity, identity, looksLikeJwt, tokenFromSearch, withToken } from "../src/auth";
import { streamUrl } from "../src/client";
import { describe as describeState, onRefusal } from "../src/state";

describe("where the token travels", () => {
  it("reads the query form's token from the page's address", () => {
    expect(tokenFromSearch("?access_token=eyJ.a.b&x=1")).toBe("eyJ.a.b");
    expect(tokenFromSearch("?access_token=")).toBeNull();
    expect(tokenFromSearch("")).toBeNull();
  });

  it("adds the token to URLs and headers only in the query form", () => {
    expect(withToken("/dashboard", "t+1")).toBe("/dashboard?access_token=t%2B1");
    expect(withToken("/x?a=1", "t")).toBe("/x?a=1&access_token=t");
    expect(withToken("/x", null)).toBe("/x");
    expect(authHeaders("t")).toEqual({ Authorization: "Bearer t" });
    expect(authHeaders(null)).toEqual({});
  });

  it("puts the token in the stream URL after the session, or leaves it to the cookie", () => {
    expect(streamUrl("u", "p", "s1", "tok")).toBe("/stream/u/p?session=s1&access_token=tok");
    expect(streamUrl("u", "p", "s1")).toBe("/stream/u/p?session=s1");
  });

  it("tells a token from a pasted mistake before asking the server", () => {
    expect(looksLikeJwt(" eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1In0.c2ln ")).toBe(true);
    expect(looksLikeJwt("eyJhbGciOiJub25lIn0.eyJzdWIiOiJ1In0.")).toBe(true);
    expect(looksLikeJwt("my password")).toBe(false);
  });
});

describe("who you are", () => {
  it("reads /auth/session: auth off, signed in by cookie or query, or refused", () => {
    expect(identity(200, { auth: false }, null)).toEqual({ kind: "off" });
    const body = { auth: true, subject: "u1", admin: true, expires_at_ms: 5 };
    expect(identity(200, body, null)).toEqual({ kind: "signed-in", subject: "u1", admin: true, expiresAtMs: 5, via: "cookie" });
    expect(identity(200, body, "tok")).toMatchObject({ via: "query" });
    expect(identity(401, { error: "the token has expired" }, null)).toEqual({ kind: "signed-out", reason: "the token has expired" });
    expect(identity(0, null, null)).toEqual({ kind: "signed-out", reason: "HTTP 0" });
  });

  it("says it in words", () => {
    expect(describeIdentity({ kind: "off" })).toMatch(/Auth is off/);
    const who = describeIdentity({ kind: "signed-in", subject: "u1", admin: true, expiresAtMs: 0, via: "cookie" });
    expect(who).toMatch(/^Signed in as u1 \(admin\) until .*kept in a cookie\.$/);
    expect(describeIdentity({ kind: "signed-out", reason: "no token" })).toMatch(/Not signed in \(no token\).*kubescaler token/);
  });
});

describe("refusals of the auth mode", () => {
  it("waits out a 429 for the server's retry_after_s, at least a second", () => {
    const limited = onRefusal(429, { retry_after_s: 3, limit: "session" }, 1, 0);
    expect(limited).toEqual({ kind: "reconnecting", reason: "limited", retryInMs: 3000, detail: "session" });
    expect(describeState(limited)).toBe("Rate limited: too many stream opens from this session; trying again in 3 s.");
    expect(onRefusal(429, null, 1, 0)).toMatchObject({ reason: "limited", retryInMs: 1000 });
  });

  it("stops on 401 and 403 with the server's words", () => {
    expect(onRefusal(401, { error: "the token has expired" }, 1, 0)).toEqual({ kind: "failed", status: 401, message: "the token has expired" });
    expect(onRefusal(403, { error: "this token is not for user u" }, 1, 0)).toMatchObject({ kind: "failed", status: 403 });
  });
});
