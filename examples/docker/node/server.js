// A stand-in Node.js service: it gets DB_PASSWORD from the launcher, never prints it,
// and shuts down cleanly on the SIGTERM the launcher forwards (docker stop).
"use strict";
const http = require("node:http");

const port = Number(process.env.PORT || 8080);
const length = (process.env.DB_PASSWORD || "").length;
const server = http.createServer((request, response) => {
  response.end(`ok: DB_PASSWORD is ${length} characters\n`);
});
server.listen(port, () => console.log(`listening on ${port}, DB_PASSWORD is ${length} characters`));
process.on("SIGTERM", () => server.close(() => process.exit(0)));
