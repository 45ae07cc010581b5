// Runs an async job so that at most one instance is in flight and triggers that arrive meanwhile collapse into
// one follow-up run. A burst of file-change events thus costs at most two reloads, and the last one always sees
// the newest file.
export function coalesce(job: () => Promise<void>): {
  trigger: () => Promise<void>;
  idle: () => Promise<void>;
} {
  let running: Promise<void> | null = null;
  let again = false;
  const loop = async () => {
    try {
      do {
        again = false;
        await job();
      } while (again);
    } finally {
      running = null;
    }
  };
  return {
    trigger() {
      if (running) {
        again = true;
        return running;
      }
      running = loop();
      return running;
    },
    idle: () => running ?? Promise.resolve(),
  };
}
