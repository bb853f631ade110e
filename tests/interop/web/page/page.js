// Starts Converse.js with the settings the test serves at /config.json, plus a tiny plugin
// that reports the connection state on window.confabProbe, so the test can tell a real
// WebSocket or BOSH login from a page that merely rendered.
// Converse's dist build is an ES module (it loads its chunks relative to import.meta.url).
import converse from '/dist/converse.min.js';

window.confabProbe = { connected: false, disconnected: false, transport: null, jid: null, service: null, errors: [] };

converse.plugins.add('confab-probe', {
  initialize() {
    const { api } = this._converse;
    const probe = window.confabProbe;
    api.listen.on('connected', () => {
      const conn = api.connection.get();
      probe.connected = true;
      probe.transport = api.connection.isType('websocket')
        ? 'websocket'
        : api.connection.isType('bosh') ? 'bosh' : 'other';
      probe.jid = conn.jid;
      probe.service = conn.service;
    });
    // The group chat scenario joins a room the way Converse's own "join room" form does.
    window.confabOpenRoom = (jid, nick) => api.rooms.open(jid, { nick }, true).then(() => true);
    // With auto_reconnect off this also ends a failed login, so the test need not wait out
    // its timeout.
    api.listen.on('disconnected', () => { probe.connected = false; probe.disconnected = true; });
  },
});

fetch('/config.json')
  .then((r) => r.json())
  .then((config) => converse.initialize({ ...config, whitelisted_plugins: ['confab-probe'] }))
  .catch((e) => window.confabProbe.errors.push(String(e)));
