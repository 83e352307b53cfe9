// Reading comfort: one header per run of messages by one author, a divider per day, and
// "Jump to latest" for a reader who scrolled up while others keep writing.
import {
  test,
  expect,
  createChannel,
  messageLog,
  messageWithText,
  openChannel,
  postManyViaApi,
  sendMessage,
  uniqueChannel,
  uniqueSuffix,
} from './helpers';
import type { Locator } from '@playwright/test';

/** Whether an element takes up visible room (a visually hidden one is clipped to 1×1 px). */
async function shownWidth(locator: Locator): Promise<number> {
  const box = await locator.boundingBox();
  return box?.width ?? 0;
}

/** The text drawn before an element by CSS (the day divider), or '' if none. */
async function dividerText(message: Locator): Promise<string> {
  return message.evaluate((el) => {
    const content = getComputedStyle(el, '::before').content;
    return content === 'none' || content === 'normal' ? '' : content.replace(/^"|"$/g, '');
  });
}

test.describe('reading a conversation', () => {
  test('consecutive messages by one author share one header, under a "Today" divider', async ({
    newUser,
  }) => {
    const alice = await newUser(`Alice ${uniqueSuffix()}`);
    const bob = await newUser(`Bob ${uniqueSuffix()}`);
    const channel = uniqueChannel('group');
    await createChannel(alice.page, channel);
    await openChannel(bob.page, channel);

    const run = uniqueSuffix();
    const [first, second, third, fourth] = ['first', 'second', 'third', 'fourth'].map((w) => `${w} ${run}`);
    await sendMessage(alice.page, first);
    await expect(messageWithText(alice.page, first)).toHaveCount(1);
    await sendMessage(alice.page, second);
    await expect(messageWithText(bob.page, second)).toHaveCount(1);
    await sendMessage(bob.page, third);
    await expect(messageWithText(alice.page, third)).toHaveCount(1);
    await sendMessage(alice.page, fourth);

    for (const page of [alice.page, bob.page]) {
      await expect(messageWithText(page, fourth)).toHaveCount(1);
      const [m1, m2, m3, m4] = [first, second, third, fourth].map((t) => messageWithText(page, t));

      // Alice's first message has the header; her second, a moment later, just the body.
      await expect(m1.locator('.author')).toHaveText(alice.name);
      expect(await shownWidth(m1.locator('.author'))).toBeGreaterThan(10);
      await expect(m2.locator('.body')).toBeVisible();
      await expect.poll(() => shownWidth(m2.locator('.author'))).toBeLessThanOrEqual(1);
      await expect.poll(() => shownWidth(m2.locator('.tag'))).toBeLessThanOrEqual(1);
      // Screen readers still hear who wrote it, and when.
      await expect(m2).toContainText(alice.name);
      await expect(m2.locator('time')).toHaveAttribute('datetime', /^\d{4}-/);
      // The time shows when the pointer is on the message.
      await expect(m2.locator('time')).toHaveCSS('opacity', '0');
      await m2.hover();
      await expect(m2.locator('time')).toHaveCSS('opacity', '1');
      // Bob interrupts: his message has a header, and so has Alice's next one.
      await expect(m3.locator('.author')).toHaveText(bob.name);
      expect(await shownWidth(m3.locator('.author'))).toBeGreaterThan(10);
      expect(await shownWidth(m4.locator('.author'))).toBeGreaterThan(10);

      // One divider, "Today", above the first message of the day.
      await expect.poll(() => dividerText(m1)).toBe('Today');
      const dividers = messageLog(page).locator('li[data-day]');
      await expect(dividers).toHaveCount(1);
      for (const later of [m2, m3, m4]) expect(await dividerText(later)).toBe('');
    }

    // The server renders the same grouping (what the page shows before and without scripts).
    await alice.page.reload();
    await expect(messageWithText(alice.page, second)).toHaveClass(/\bcont\b/);
    await expect(messageWithText(alice.page, third)).not.toHaveClass(/\bcont\b/);
    await expect(messageWithText(alice.page, first)).toHaveAttribute('data-day', 'Today');
  });

  test('"Jump to latest" appears for a reader scrolled up when others write, and takes them there', async ({
    newUser,
  }) => {
    const reader = await newUser(`Reader ${uniqueSuffix()}`);
    const writer = await newUser(`Writer ${uniqueSuffix()}`);
    const channel = uniqueChannel('jump');
    await createChannel(reader.page, channel);
    await postManyViaApi([writer], channel, 40, (i) => `backlog ${i}`);
    await openChannel(reader.page, channel);
    await openChannel(writer.page, channel);

    const log = messageLog(reader.page);
    const jump = reader.page.getByRole('button', { name: 'Jump to latest' });
    await expect(messageWithText(reader.page, 'backlog 40')).toBeInViewport();
    await expect(jump).toBeHidden();

    // At the bottom, a new message keeps the list pinned to the newest.
    const pinned = `while at the bottom ${uniqueSuffix()}`;
    await sendMessage(writer.page, pinned);
    await expect(messageWithText(reader.page, pinned)).toBeInViewport();
    await expect(jump).toBeHidden();

    // The reader scrolls up with the mouse wheel: the button appears.
    await log.hover();
    await reader.page.mouse.wheel(0, -1500);
    await expect(jump).toBeVisible();
    await expect(messageWithText(reader.page, pinned)).not.toBeInViewport();
    const scrolledTo = await log.evaluate((el) => el.scrollTop);

    // A new message arrives: the reader stays where they are, the button stays.
    const arrived = `while scrolled up ${uniqueSuffix()}`;
    await sendMessage(writer.page, arrived);
    await expect(messageWithText(reader.page, arrived)).toHaveCount(1);
    await expect(messageWithText(reader.page, arrived)).not.toBeInViewport();
    expect(Math.abs((await log.evaluate((el) => el.scrollTop)) - scrolledTo)).toBeLessThan(5);
    await expect(jump).toBeVisible();

    // The button takes them to the newest message and goes away.
    await jump.click();
    await expect(messageWithText(reader.page, arrived)).toBeInViewport();
    await expect(jump).toBeHidden();

    // Back at the bottom, the list follows new messages again.
    const again = `back at the bottom ${uniqueSuffix()}`;
    await sendMessage(writer.page, again);
    await expect(messageWithText(reader.page, again)).toBeInViewport();
  });
});
