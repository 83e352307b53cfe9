import path from 'node:path';
import { test, expect, messageWithText, openChannel, sendMessage, uniqueSuffix } from './helpers';

const SCREENSHOT = path.join(__dirname, '..', '..', 'docs', 'screenshot.png');

test('a friendly chat in #general, captured for the docs', async ({ newUser }) => {
  const viewport = { width: 1200, height: 750 };
  const alice = await newUser('Alice', { viewport });
  const bob = await newUser('Bob', { viewport });
  // A couple of channels so the sidebar looks lived in (already there on a re-run is fine).
  for (const name of ['design', 'releases']) {
    const response = await alice.page.request.post('/api/create_channel', { form: { name } });
    expect([200, 409]).toContain(response.status());
  }
  await openChannel(alice.page, 'general');
  await openChannel(bob.page, 'general');

  // A suffix keeps this run's messages apart from earlier runs' in #general.
  const run = uniqueSuffix();
  const lines: Array<[typeof alice, string]> = [
    [alice, `Morning all! The new build is up on staging (${run}).`],
    [bob, 'Nice, trying it now. Search feels a lot faster.'],
    [alice, 'Great. Shout if anything looks off before the release.'],
  ];
  for (const [who, text] of lines) {
    await sendMessage(who.page, text);
    await expect(messageWithText(alice.page, text).last()).toBeVisible();
    await expect(messageWithText(bob.page, text).last()).toBeVisible();
  }

  // The conversation is on Alice's screen, newest last.
  const last = messageWithText(alice.page, lines[2][1]).last();
  await expect(last).toBeInViewport();
  await expect(last.locator('.author')).toHaveText('Alice');
  await expect(messageWithText(alice.page, lines[1][1]).last().locator('.author')).toHaveText('Bob');

  // The tracked picture is rewritten only when asked (E2E_SCREENSHOT=1), so a test run
  // leaves the tree clean; otherwise the shot is still taken, to a throwaway buffer.
  await alice.page.screenshot(process.env.E2E_SCREENSHOT === '1' ? { path: SCREENSHOT } : {});
});
