// A dropped connection loses nothing: the browser reconnects on its own and fetches every
// message it missed, in order, none twice.
import { test, expect, createChannel, messageLog, openChannel, postViaApi, uniqueChannel } from './helpers';

test('after going offline and back, the messages sent meanwhile appear in order, once each', async ({ newUser }) => {
  const alice = await newUser('Alice');
  const bob = await newUser('Bob');
  const channel = uniqueChannel('offline');
  await createChannel(alice.page, channel);
  await openChannel(bob.page, channel);
  await postViaApi(bob.page, channel, 'before the drop');
  await expect(messageLog(alice.page).locator('li.message')).toHaveCount(1);
  const status = alice.page.locator('header .status');
  await expect(status).toHaveAttribute('data-state', 'online');

  await alice.context.setOffline(true);
  await expect(status).toHaveAttribute('data-state', /offline|connecting/);
  for (let i = 1; i <= 20; i++) {
    await postViaApi(bob.page, channel, `missed ${i}`);
  }
  await alice.context.setOffline(false);
  await expect(status).toHaveAttribute('data-state', 'online');

  const bodies = messageLog(alice.page).locator('li.message .body');
  await expect(bodies).toHaveCount(21);
  const expected = ['before the drop', ...Array.from({ length: 20 }, (_, i) => `missed ${i + 1}`)];
  await expect(bodies).toHaveText(expected);
  // Same page: no reload happened.
  await expect(alice.page).toHaveURL(new RegExp(`/c/${channel}$`));
});
