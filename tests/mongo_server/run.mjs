// Starts the MongoDB-wire test server on 127.0.0.1:PORT until killed.
import { CongoServer } from './congodb/index.js';

const port = Number(process.argv[2] || 27017);
const server = new CongoServer({ port, host: '127.0.0.1' });
await server.start();
console.log(`mongo test server listening on 127.0.0.1:${port}`);
const stop = async () => { await server.stop(); process.exit(0); };
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
