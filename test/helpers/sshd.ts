// The loopback sshd lives in src/demo (npm start uses it too); tests import it from here.
export { type SshdOptions, type SshdServer, sshdAvailable, startSshd } from "../../src/demo/sshd.js";
