import {
  test,
  expect,
  channelHeading,
  channelNav,
  composer,
  createChannel,
  messageWithText,
  openChannel,
  sendMessage,
  uniqueChannel,
  uniqueSuffix,
  waitForHydration,
  type User,
} from './helpers';
import type { Page } from '@playwright/test';

/** Starts (or opens) a direct message with `other` from the "New message" picker. */
async function messagePerson(page: Page, other: User): Promise<void> {
  await page.getByRole('link', { name: 'New message' }).click();
  await page.getByLabel('Find people by name').fill(other.name);
  await page.getByRole('button', { name: 'Search' }).click();
  await page.getByRole('button', { name: `Message ${other.name}`, exact: true }).click();
  await expect(page).toHaveURL(/\/d\/\d+$/);
  await expect(page.getByRole('heading', { level: 1, name: other.name })).toBeVisible();
  await waitForHydration(page);
}

/** The sidebar entry of a conversation, by its title. */
function sidebarEntry(page: Page, title: string | RegExp) {
  return channelNav(page).getByRole('listitem').filter({ hasText: title });
}

test.describe('conversations', () => {
  test('a direct message reaches only its two people, live, with an unread badge', async ({ newUser }) => {
    const alice = await newUser(`Alice ${uniqueSuffix()}`);
    const bob = await newUser(`Bob ${uniqueSuffix()}`);
    const carol = await newUser(`Carol ${uniqueSuffix()}`);
    await openChannel(bob.page, 'general');

    await messagePerson(alice.page, bob);
    const text = `just between us ${uniqueSuffix()}`;
    await sendMessage(alice.page, text);
    await expect(messageWithText(alice.page, text)).toHaveCount(1);

    // Bob, elsewhere, sees it listed under Direct messages at once: bold, with a badge.
    const entry = sidebarEntry(bob.page, alice.name);
    await expect(entry).toHaveClass(/unread/);
    await expect(entry.locator('.badge')).toHaveText('1');
    await expect(bob.page).toHaveTitle('(1) Flack');
    await entry.getByRole('link').click();
    await expect(messageWithText(bob.page, text)).toHaveCount(1);
    await expect(bob.page.getByRole('separator', { name: 'New messages' })).toBeVisible();
    await expect(entry).not.toHaveClass(/unread/);
    await expect(bob.page).toHaveTitle('Flack');

    // Carol, with the link, gets nothing.
    await carol.page.goto(alice.page.url());
    await expect(carol.page.getByRole('alert')).toContainText('There is no such conversation');
    await expect(carol.page.getByText(text)).toHaveCount(0);
  });

  test('a private channel is invisible until a member adds you, and leaving hides it again', async ({ newUser }) => {
    const alice = await newUser(`Alice ${uniqueSuffix()}`);
    const bob = await newUser(`Bob ${uniqueSuffix()}`);
    const name = uniqueChannel('secret');
    await alice.page.getByLabel('Private').check();
    await createChannel(alice.page, name);
    await expect(channelNav(alice.page).getByRole('link', { name: `🔒${name}` })).toBeVisible();

    await openChannel(bob.page, 'general');
    await bob.page.goto(`/c/${name}`);
    await expect(bob.page.getByRole('alert')).toContainText(`There is no channel named #${name}`);
    await bob.page.goto('/channels');
    await expect(bob.page.getByRole('link', { name: `#${name}` })).toHaveCount(0);
    await openChannel(bob.page, 'general');

    await alice.page.getByRole('link', { name: 'Add people' }).click();
    await alice.page.getByLabel('Find people by name').fill(bob.name);
    await alice.page.getByRole('button', { name: 'Search' }).click();
    await alice.page.getByRole('button', { name: `Add ${bob.name}` }).click();

    // Bob's sidebar lists it at once, and he can read and write.
    const link = channelNav(bob.page).getByRole('link', { name: `🔒${name}` });
    await expect(link).toBeVisible();
    await link.click();
    // The composer follows the route once the channel has loaded: wait for it, or the
    // message would go to the channel still open.
    await expect(channelHeading(bob.page, name)).toBeVisible();
    const text = `hello club ${uniqueSuffix()}`;
    await sendMessage(bob.page, text);
    await openChannel(alice.page, name);
    await expect(messageWithText(alice.page, text)).toHaveCount(1);

    await bob.page.getByRole('button', { name: 'Leave' }).click();
    await expect(bob.page).toHaveURL(/\/$/);
    await expect(bob.page.getByRole('heading', { name: 'Pick a channel' })).toBeVisible();
    await expect(channelNav(bob.page).getByRole('link', { name: `🔒${name}` })).toHaveCount(0);
  });

  test('editing with Up and Enter, reacting and replying in a thread are live for the other person', async ({ newUser }) => {
    const alice = await newUser(`Alice ${uniqueSuffix()}`);
    const bob = await newUser(`Bob ${uniqueSuffix()}`);
    const channel = uniqueChannel('live');
    await createChannel(alice.page, channel);
    await openChannel(bob.page, channel);

    const text = `tpyo here ${uniqueSuffix()}`;
    await sendMessage(alice.page, text);
    await expect(messageWithText(bob.page, text)).toHaveCount(1);

    // Up in the empty composer edits the last message; Escape cancels, Enter saves.
    await composer(alice.page).press('ArrowUp');
    const editor = alice.page.getByLabel('Edit message', { exact: true });
    await expect(editor).toBeFocused();
    await editor.press('Escape');
    await expect(editor).toHaveCount(0);
    await composer(alice.page).press('ArrowUp');
    const fixed = text.replace('tpyo', 'typo');
    await editor.fill(fixed);
    await editor.press('Enter');
    const edited = messageWithText(bob.page, fixed);
    await expect(edited).toHaveCount(1);
    await expect(edited.locator('.edited')).toHaveText('(edited)');

    // Bob reacts; Alice sees the count and who.
    await edited.hover();
    await edited.getByLabel('Add reaction').click();
    await edited.getByRole('button', { name: 'React with 👍' }).click();
    const onAlice = messageWithText(alice.page, fixed).getByRole('button', { name: new RegExp(`^👍 1: ${bob.name}`) });
    await expect(onAlice).toBeVisible();
    await expect(onAlice).toHaveAttribute('aria-pressed', 'false');
    // Bob takes it back by pressing his own.
    const mine = messageWithText(bob.page, fixed).getByRole('button', { name: /^👍 1/ });
    await expect(mine).toHaveAttribute('aria-pressed', 'true');
    await mine.click();
    await expect(messageWithText(alice.page, fixed).locator('.reaction')).toHaveCount(0);

    // Bob replies in a thread beside the channel; Alice sees the reply count.
    const item = messageWithText(bob.page, fixed);
    await item.hover();
    await item.getByRole('link', { name: 'Reply in thread' }).click();
    await expect(bob.page).toHaveURL(new RegExp(`/c/${channel}/t/[0-9a-f]+$`));
    const thread = bob.page.getByRole('complementary', { name: 'Thread' });
    await expect(thread).toBeVisible();
    const reply = `agreed ${uniqueSuffix()}`;
    await thread.getByLabel('Reply').fill(reply);
    await thread.getByLabel('Reply').press('Enter');
    await expect(thread.getByText(reply)).toBeVisible();
    const count = messageWithText(alice.page, fixed).getByRole('link', { name: /^1 reply/ });
    await expect(count).toBeVisible();
    await count.click();
    await expect(alice.page.getByRole('complementary', { name: 'Thread' }).getByText(reply)).toBeVisible();
  });

  test('mentions are suggested, highlighted and counted; typing shows; members are online', async ({ newUser }) => {
    const alice = await newUser(`Alice ${uniqueSuffix()}`);
    const bob = await newUser(`Bob ${uniqueSuffix()}`);
    const here = uniqueChannel('here');
    const there = uniqueChannel('there');
    await createChannel(alice.page, there);
    await createChannel(alice.page, here);
    await openChannel(bob.page, there);
    await sendMessage(bob.page, 'joining in');

    // Bob types: Alice, who has the channel open, sees it (signals are throttled to one per
    // 3 s and not replayed, so keep typing until her socket has the channel open).
    await openChannel(alice.page, there);
    await expect(alice.page.locator('.status')).toHaveAttribute('data-state', 'online');
    await expect(async () => {
      await composer(bob.page).pressSequentially('.');
      await expect(alice.page.getByText(`${bob.name} is typing…`)).toBeVisible({ timeout: 1500 });
    }).toPass({ timeout: 20_000, intervals: [1_800] });
    await composer(bob.page).fill('');
    // The composer suggests members; Tab picks the first.
    await composer(bob.page).pressSequentially(`@${alice.name.slice(0, 3)}`);
    await expect(bob.page.getByRole('option').first()).toContainText(alice.name);
    await composer(bob.page).press('Tab');
    await expect(composer(bob.page)).toHaveValue(`@${alice.name} `);

    // Alice moves on; the mention reaches her sidebar as a badge.
    await openChannel(alice.page, here);
    await composer(bob.page).pressSequentially('look at this');
    await composer(bob.page).press('Enter');
    const entry = sidebarEntry(alice.page, there);
    await expect(entry.locator('.badge')).toHaveText('1');
    await entry.getByRole('link').click();
    const mention = alice.page.locator('li.message.mentions-me');
    await expect(mention).toContainText('look at this');
    await expect(mention.locator('mark.mention')).toHaveText(`@${alice.name}`);

    // The members panel shows Bob online.
    await alice.page.getByRole('button', { name: 'Members' }).click();
    const members = alice.page.getByRole('list', { name: 'Members' });
    await expect(members.getByRole('listitem').filter({ hasText: bob.name }).locator('.presence')).toHaveAttribute('data-status', 'online');
  });
});
