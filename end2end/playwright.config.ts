import { defineConfig } from '@playwright/test';

/** Where the Flack server under test answers. */
export const baseURL = process.env.E2E_BASE_URL ?? 'http://127.0.0.1:3210';

const chromiumArgs = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--disable-dev-shm-usage',
];

export default defineConfig({
  testDir: './tests',
  // The server and the tests are started at the same moment: wait for it.
  globalSetup: './global-setup.ts',
  // Two cores: two workers. Every test creates its own uniquely named channels,
  // so tests never depend on one another.
  workers: 2,
  fullyParallel: true,
  forbidOnly: !!process.env.CI,
  retries: process.env.CI ? 1 : 0,
  reporter: [['list']],
  timeout: 30_000,
  expect: { timeout: 10_000 },
  use: {
    baseURL,
    browserName: 'chromium',
    launchOptions: {
      executablePath: '/usr/bin/chromium',
      args: chromiumArgs,
    },
    trace: 'retain-on-failure',
  },
  projects: [
    {
      // Runs first, while the server holds only what it starts with, so the picture in the
      // README shows a tidy sidebar rather than every test's channels.
      name: 'screenshot',
      testMatch: '**/screenshot.spec.ts',
      use: { javaScriptEnabled: true },
    },
    {
      name: 'js',
      testIgnore: ['**/nojs.spec.ts', '**/screenshot.spec.ts'],
      dependencies: ['screenshot'],
      use: { javaScriptEnabled: true },
    },
    {
      name: 'nojs',
      testMatch: '**/nojs.spec.ts',
      dependencies: ['screenshot'],
      use: { javaScriptEnabled: false },
    },
  ],
});
