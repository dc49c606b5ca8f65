import net from 'node:net';

/**
 * Asks the kernel for a free TCP port on `host` (bind to port 0, read it, close).
 * There is an unavoidable window between closing and the caller binding it; callers start
 * their server right away, and ports handed out this way are not reused soon by Linux.
 */
export function findFreePort(host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.once('error', reject);
    server.listen({ host, port: 0, exclusive: true }, () => {
      const address = server.address();
      if (address === null || typeof address === 'string') {
        server.close();
        reject(new Error('findFreePort: could not read the bound address'));
        return;
      }
      const { port } = address;
      server.close((err) => (err ? reject(err) : resolve(port)));
    });
  });
}
