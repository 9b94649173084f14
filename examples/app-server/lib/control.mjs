// The control channel between the main process and a front: one JSON
// object per line over a stream socket.

/** Call handler(message) for each JSON line arriving on `socket`. */
export function onMessages(socket, handler) {
  let buffered = '';
  socket.setEncoding('utf8');
  socket.on('data', (chunk) => {
    buffered += chunk;
    let nl;
    while ((nl = buffered.indexOf('\n')) >= 0) {
      const line = buffered.slice(0, nl);
      buffered = buffered.slice(nl + 1);
      handler(JSON.parse(line));
    }
  });
}

/** Write one message, unless the socket is gone. */
export function sendMessage(socket, message) {
  if (!socket.destroyed && socket.writable) socket.write(`${JSON.stringify(message)}\n`);
}
