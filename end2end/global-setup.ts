import type { FullConfig } from '@playwright/test';

const TIMEOUT_MS = 120_000;
const INTERVAL_MS = 500;

/**
 * The Flack server is started at the same moment as the tests, so poll its
 * root URL until it answers HTTP 200 (or give up after two minutes).
 */
export default async function globalSetup(config: FullConfig): Promise<void> {
  const baseURL =
    config.projects[0]?.use.baseURL ?? process.env.E2E_BASE_URL ?? 'http://127.0.0.1:3210';
  const deadline = Date.now() + TIMEOUT_MS;
  let lastProblem = 'no answer yet';

  while (Date.now() < deadline) {
    try {
      const response = await fetch(baseURL, {
        redirect: 'follow',
        signal: AbortSignal.timeout(5_000),
      });
      // Drain the body so the connection is released.
      await response.arrayBuffer();
      if (response.status === 200) return;
      lastProblem = `HTTP ${response.status}`;
    } catch (error) {
      lastProblem = error instanceof Error ? error.message : String(error);
    }
    await new Promise((resolve) => setTimeout(resolve, INTERVAL_MS));
  }

  throw new Error(
    `Flack did not answer HTTP 200 at ${baseURL} within ${TIMEOUT_MS / 1000} s (last: ${lastProblem})`,
  );
}
