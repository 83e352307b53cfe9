// A long channel opens at its latest 100 messages; scrolling up reads further back, a page at a
// time, without losing one's place, until the very first message.
import {
  test,
  expect,
  createChannel,
  escapeRegExp,
  messageLog,
  messageWithText,
  openChannel,
  postManyViaApi,
  uniqueChannel,
  uniqueSuffix,
} from './helpers';
import type { Locator } from '@playwright/test';

/** Scrolls the message list to its very top, the way a reader does with the wheel. */
async function scrollToTop(log: Locator): Promise<void> {
  await log.evaluate((el) => {
    el.scrollTop = 0;
    // A list already at the top fires no scroll event of its own.
    el.dispatchEvent(new Event('scroll'));
  });
}

test.describe('older messages', () => {
  test('scrolling to the top of a long channel loads older pages, in order, up to the first message', async ({
    newUser,
  }) => {
    test.setTimeout(120_000);
    const channel = uniqueChannel('history');
    // Nobody may post 250 messages in one burst (rate limit): five people take turns.
    const users = [];
    for (const who of ['Ann', 'Ben', 'Cid', 'Dee', 'Eve']) users.push(await newUser(`${who} ${uniqueSuffix()}`));
    const reader = users[0];
    await createChannel(reader.page, channel);
    await postManyViaApi(users, channel, 250, (i) => `msg ${i}`);

    await openChannel(reader.page, channel);
    const log = messageLog(reader.page);
    const items = log.locator('li.message');
    const olderLink = log.getByRole('link', { name: 'Load older messages' });
    await expect(items).toHaveCount(100);
    await expect(items.first().locator('.body')).toHaveText('msg 151');
    await expect(items.last().locator('.body')).toHaveText('msg 250');
    // The list opens at the newest message.
    await expect(messageWithText(reader.page, 'msg 250')).toBeInViewport();
    // Older messages exist: the list starts with a way to them.
    await expect(log.locator('li').first()).toHaveClass(/\bolder\b/);
    await expect(olderLink).toHaveAttribute('href', new RegExp(`/c/${escapeRegExp(channel)}\\?before=\\d+$`));

    // Up to the top: the page before comes in front, and the reader still sees where they were.
    await scrollToTop(log);
    await expect(items).toHaveCount(200);
    await expect(items.first().locator('.body')).toHaveText('msg 51');
    await expect(messageWithText(reader.page, 'msg 151')).toBeInViewport();
    await expect(messageWithText(reader.page, 'msg 51')).not.toBeInViewport();
    await expect(log.locator('li').first()).toHaveClass(/\bolder\b/);

    // Once more: the last, shorter page; the channel's start is reached.
    await scrollToTop(log);
    await expect(items).toHaveCount(250);
    await expect(items.first().locator('.body')).toHaveText('msg 1');
    await expect(messageWithText(reader.page, 'msg 51')).toBeInViewport();
    await expect(olderLink).toHaveCount(0);
    await expect(log.locator('li.older')).toHaveCount(0);

    // Every message once, in order: no gaps, no repeats.
    const expected = Array.from({ length: 250 }, (_, i) => `msg ${i + 1}`);
    await expect(log.locator('li.message .body')).toHaveText(expected);
    // Loaded on the same page, not by navigating.
    await expect(reader.page).toHaveURL(new RegExp(`/c/${escapeRegExp(channel)}$`));

    // At the start, scrolling up again loads nothing more.
    await scrollToTop(log);
    await reader.page.waitForTimeout(500);
    await expect(items).toHaveCount(250);
  });

  test('"Load older messages" loads the page before in place, without leaving the page', async ({ newUser }) => {
    test.setTimeout(90_000);
    const channel = uniqueChannel('older');
    const users = [];
    for (const who of ['Fay', 'Gus', 'Hal']) users.push(await newUser(`${who} ${uniqueSuffix()}`));
    const reader = users[0];
    await createChannel(reader.page, channel);
    await postManyViaApi(users, channel, 130, (i) => `msg ${i}`);

    await openChannel(reader.page, channel);
    const log = messageLog(reader.page);
    const items = log.locator('li.message');
    await expect(items).toHaveCount(100);
    await expect(items.first().locator('.body')).toHaveText('msg 31');

    // A real click would first scroll the link (the list's top) into view, which loads the
    // page by itself; dispatching the click checks the link's own behaviour.
    const link = log.getByRole('link', { name: 'Load older messages' });
    await expect(link).toBeAttached();
    await link.dispatchEvent('click');
    await expect(items).toHaveCount(130);
    await expect(log.locator('li.message .body')).toHaveText(Array.from({ length: 130 }, (_, i) => `msg ${i + 1}`));
    await expect(log.getByRole('link', { name: 'Load older messages' })).toHaveCount(0);
    // Still the live channel page: no navigation to the ?before= page.
    await expect(reader.page).toHaveURL(new RegExp(`/c/${escapeRegExp(channel)}$`));
  });
});
