import {
  test as base,
  expect,
  type APIResponse,
  type Browser,
  type BrowserContext,
  type BrowserContextOptions,
  type Locator,
  type Page,
} from '@playwright/test';

export { expect };

/**
 * A channel name nobody else uses: `${prefix}-<time>-<random>`, at most 32
 * characters of letters, digits, '-' and '_' (the app's channel name rules).
 */
export function uniqueChannel(prefix = 't'): string {
  const time = Date.now().toString(36);
  const random = Math.random().toString(36).slice(2, 8);
  const safePrefix = prefix.replace(/[^A-Za-z0-9_-]/g, '').slice(0, 32 - time.length - random.length - 2);
  return `${safePrefix}-${time}-${random}`;
}

/** A short random suffix, to tell apart display names made by concurrent tests. */
export function uniqueSuffix(): string {
  return Math.random().toString(36).slice(2, 7);
}

/** True when the current test runs with JavaScript (the `js` project). */
function javaScriptEnabled(): boolean {
  return base.info().project.use.javaScriptEnabled !== false;
}

/**
 * Waits until the app has hydrated (`<html data-hydrated="true">`), so clicks
 * reach the Leptos event handlers. Without JavaScript there is nothing to wait for.
 */
export async function waitForHydration(page: Page): Promise<void> {
  if (!javaScriptEnabled()) return;
  await expect(page.locator('html[data-hydrated="true"]')).toHaveCount(1);
}

/** The header element showing the current user's display name. */
export function myName(page: Page): Locator {
  return page.locator('header').getByTestId('me-name');
}

/** The sidebar navigation landmark listing the conversations (channels and direct messages). */
export function channelNav(page: Page): Locator {
  return page.getByRole('navigation', { name: 'Your conversations' });
}

/** The sidebar link to one channel (its text is `#name`). */
export function channelLink(page: Page, channel: string): Locator {
  return channelNav(page).getByRole('link', { name: `#${channel}`, exact: true });
}

/** The channel page's title: a level-1 heading `#name`. */
export function channelHeading(page: Page, channel: string): Locator {
  return page.getByRole('heading', { level: 1, name: `#${channel}`, exact: true });
}

/** The open channel's messages: the live region (role log) around the list of messages. */
export function messageLog(page: Page): Locator {
  return page.getByRole('log');
}

/** The message items in the open channel whose body contains `text`. */
export function messageWithText(page: Page, text: string): Locator {
  return messageLog(page).locator('li.message').filter({
    has: page.locator('.body', { hasText: text }),
  });
}

/** The composer's textarea. */
export function composer(page: Page): Locator {
  return page.getByLabel('Message', { exact: true });
}

/** Escapes a string for use inside a RegExp. */
export function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/**
 * First visit: opens '/', answers the display-name prompt and waits until the
 * header shows the name.
 */
export async function chooseName(page: Page, name: string): Promise<void> {
  await page.goto('/');
  await waitForHydration(page);
  await page.getByLabel('Display name').fill(name);
  await page.getByRole('button', { name: 'Continue' }).click();
  await expect(myName(page)).toHaveText(name.trim());
}

/** The phone's "Conversations" menu button (a `<summary>`; hidden on wide screens). */
export function conversationsMenu(page: Page): Locator {
  return page.locator('summary', { hasText: 'Conversations' });
}

/** On a phone, opens the folded "Conversations" menu so the sidebar can be used. */
export async function unfoldSidebar(page: Page): Promise<void> {
  if ((await conversationsMenu(page).isVisible()) && !(await channelNav(page).isVisible())) {
    await conversationsMenu(page).click();
    await expect(channelNav(page)).toBeVisible();
  }
}

/** Creates a channel with the sidebar form and expects it to open at /c/<name>. */
export async function createChannel(page: Page, name: string): Promise<void> {
  await unfoldSidebar(page);
  await page.getByLabel('Channel name').fill(name);
  await page.getByRole('button', { name: 'Create channel' }).click();
  await expect(page).toHaveURL(new RegExp(`/c/${escapeRegExp(name)}$`));
  // The form post loads a new page: keys typed before it hydrates would reach a plain form.
  await waitForHydration(page);
  await expect(channelHeading(page, name)).toBeVisible();
}

/** Opens a channel by URL and waits until it is ready to use. */
export async function openChannel(page: Page, name: string): Promise<void> {
  await page.goto(`/c/${name}`);
  await waitForHydration(page);
  await expect(channelHeading(page, name)).toBeVisible();
}

/** Types a message in the composer and sends it with Enter. */
export async function sendMessage(page: Page, text: string): Promise<void> {
  const box = composer(page);
  await box.fill(text);
  await box.press('Enter');
  await expect(box).toHaveValue('');
}

/**
 * Posts a message through the server function, authenticated by the page's
 * browser-context cookies. Fails the test unless the server accepts it.
 */
export async function postViaApi(page: Page, channel: string, body: string): Promise<APIResponse> {
  const conversation = await conversationId(page, channel);
  const response = await page.request.post('/api/post_message', {
    form: { conversation: String(conversation), body },
  });
  expect(response.ok(), `POST /api/post_message answered ${response.status()}`).toBe(true);
  return response;
}

/** The id of a channel, as the server function that loads its page answers. */
const conversationIds = new Map<string, number>();

export async function conversationId(page: Page, channel: string): Promise<number> {
  const known = conversationIds.get(channel.toLowerCase());
  if (known !== undefined) return known;
  const response = await page.request.post('/api/get_channel', { form: { channel } });
  expect(response.ok(), `POST /api/get_channel answered ${response.status()}`).toBe(true);
  const history = await response.json();
  conversationIds.set(channel.toLowerCase(), history.conversation.id);
  return history.conversation.id;
}

/**
 * Posts `count` messages through the HTTP API, one after another (so the channel's order is
 * the posting order), the users taking turns: message i (1-based) is posted by
 * `users[(i - 1) % users.length]` with the body `body(i)`. Each user may only post so many
 * messages in a burst, so a long history needs several people.
 */
export async function postManyViaApi(
  users: { page: Page }[],
  channel: string,
  count: number,
  body: (i: number) => string = (i) => `msg ${i}`,
): Promise<void> {
  expect(users.length, 'postManyViaApi needs at least one user').toBeGreaterThan(0);
  for (let i = 1; i <= count; i++) {
    await postViaApi(users[(i - 1) % users.length].page, channel, body(i));
  }
}

/** One person using Flack in their own browser context. */
export interface User {
  context: BrowserContext;
  page: Page;
  name: string;
}

type Fixtures = {
  /**
   * Opens a fresh browser context (a different person), chooses `name` as the
   * display name and hands back the context and page. Closed after the test.
   */
  newUser: (name: string, options?: BrowserContextOptions) => Promise<User>;
  /** Opens a fresh browser context without choosing a name. Closed after the test. */
  newVisitor: (options?: BrowserContextOptions) => Promise<{ context: BrowserContext; page: Page }>;
};

async function openContext(
  browser: Browser,
  opened: BrowserContext[],
  options?: BrowserContextOptions,
): Promise<{ context: BrowserContext; page: Page }> {
  const context = await browser.newContext(options);
  opened.push(context);
  const page = await context.newPage();
  return { context, page };
}

export const test = base.extend<Fixtures & { _opened: BrowserContext[] }>({
  _opened: async ({}, use) => {
    const opened: BrowserContext[] = [];
    await use(opened);
    for (const context of opened) await context.close().catch(() => {});
  },
  newVisitor: async ({ browser, _opened }, use) => {
    await use((options) => openContext(browser, _opened, options));
  },
  newUser: async ({ browser, _opened }, use) => {
    await use(async (name, options) => {
      const { context, page } = await openContext(browser, _opened, options);
      await chooseName(page, name);
      return { context, page, name };
    });
  },
});
