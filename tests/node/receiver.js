// The receiver from the platform's webhook document ("Signature Verification" and
// "Handling Webhooks"), kept as written there: Express 4 with express.json(), an
// HMAC-SHA256 hex digest of JSON.stringify(req.body) keyed with the secret string, compared
// with X-Netasampark-Signature after removing 'sha256='. Answers 200 or 401.
//
// Usage: node receiver.js PORT   (PORT 0 picks a free port)
// Environment: WEBHOOK_SECRET.  Prints "listening on PORT" once it accepts connections.
const crypto = require('crypto');
const express = require('express');

const WEBHOOK_SECRET = process.env.WEBHOOK_SECRET;
if (!WEBHOOK_SECRET) {
  console.error('WEBHOOK_SECRET is not set');
  process.exit(2);
}

const app = express();
app.use(express.json());

function verifySignature(payload, signature, secret) {
  const hash = crypto
    .createHmac('sha256', secret)
    .update(JSON.stringify(payload))
    .digest('hex');

  return hash === signature.replace('sha256=', '');
}

const received = [];

function handleMessageDelivered(data) {
  received.push(['message.delivered', data.message_id]);
}

function handleGrievanceCreated(data) {
  received.push(['grievance.created', data.grievance_id]);
}

app.post('/webhooks/netasampark', (req, res) => {
  const signature = req.headers['x-netasampark-signature'];
  const payload = req.body;

  // Verify signature
  if (!verifySignature(payload, signature, WEBHOOK_SECRET)) {
    return res.status(401).send('Invalid signature');
  }

  // Handle event
  switch (payload.event) {
    case 'message.delivered':
      handleMessageDelivered(payload.data);
      break;
    case 'grievance.created':
      handleGrievanceCreated(payload.data);
      break;
    // ... other events
  }

  res.status(200).send('OK');
});

const port = Number(process.argv[2] || process.env.PORT || 0);
const server = app.listen(port, '127.0.0.1', () => {
  console.log(`listening on ${server.address().port}`);
});

function stop() {
  server.close(() => process.exit(0));
  setTimeout(() => process.exit(0), 1000).unref();
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
// Exit when the test process goes away (stdin closes), so no receiver is left behind.
process.stdin.on('end', stop);
process.stdin.resume();
