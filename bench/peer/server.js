// The Node peer of bench/: what a team would write with Clerk's official Express SDK instead of the gateway.
// clerkMiddleware verifies the session networklessly (jwtKey) and answers handshakes itself; signed-out
// calls get 401, signed-in requests are proxied to the upstream with the identity in a header.
// Usage: PORT=... UPSTREAM=http://127.0.0.1:... CLERK_JWT_KEY=<PEM> CLERK_PUBLISHABLE_KEY=... CLERK_SECRET_KEY=... node server.js
'use strict';
const express = require('express');
const { clerkMiddleware, getAuth } = require('@clerk/express');
const { createProxyMiddleware } = require('http-proxy-middleware');
const http = require('node:http');

const app = express();
app.disable('x-powered-by');
app.use(clerkMiddleware({
  jwtKey: process.env.CLERK_JWT_KEY,
  publishableKey: process.env.CLERK_PUBLISHABLE_KEY,
  secretKey: process.env.CLERK_SECRET_KEY,
}));
app.use((req, res, next) => {
  const auth = getAuth(req);
  if (!auth.userId) {
    res.status(401).json({ error: 'unauthenticated', message: 'Sign in to use this API.' });
    return;
  }
  req.headers['x-clerk-user-id'] = auth.userId;
  req.headers['x-clerk-session-id'] = auth.sessionId;
  next();
});
app.use(createProxyMiddleware({
  target: process.env.UPSTREAM,
  changeOrigin: true,
  agent: new http.Agent({ keepAlive: true, maxSockets: 256 }),
}));
app.listen(Number(process.env.PORT), '127.0.0.1', () => console.log(`peer listening on ${process.env.PORT}`));
