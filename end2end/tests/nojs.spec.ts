// Runs in the `nojs` project: JavaScript is disabled, every action is a plain
// HTML form post answered by a redirect.
import {
  test,
  expect,
  channelHeading,
  channelLink,
  channelNav,
  composer,
  conversationsMenu,
  escapeRegExp,
  messageLog,
  messageWithText,
  myName,
  postManyViaApi,
  postViaApi,
  uniqueChannel,
  uniqueSuffix,
} from './helpers';

test.describe('without JavaScript', () => {
  test('name, channel, reading and sending all work with plain forms', async ({ page }) => {
    expect(test.info().project.use.javaScriptEnabled).toBe(false);

    // The first visit asks for a name.
    await page.goto('/');
    await expect(page.getByLabel('Display name')).toBeVisible();
    const name = `Plain ${uniqueSuffix()}`;
    await page.getByLabel('Display name').fill(name);
    await page.getByRole('button', { name: 'Continue' }).click();
    await expect(myName(page)).toHaveText(name);

    // Create a channel; it shows up in the sidebar.
    const channel = uniqueChannel('nojs');
    await page.getByLabel('Channel name').fill(channel);
    await page.getByRole('button', { name: 'Create channel' }).click();
    await expect(channelLink(page, channel)).toBeVisible();
    await channelLink(page, channel).click();
    await expect(page).toHaveURL(new RegExp(`/c/${escapeRegExp(channel)}$`));
    await expect(channelHeading(page, channel)).toBeVisible();

    // Messages already in the channel are on the page.
    await postViaApi(page, channel, 'first from before');
    await postViaApi(page, channel, 'second from before');
    await page.reload();
    const items = messageLog(page).locator('li.message');
    await expect(items).toHaveCount(2);
    await expect(items.nth(0).locator('.body')).toHaveText('first from before');
    await expect(items.nth(1).locator('.body')).toHaveText('second from before');
    await expect(items.nth(0).locator('.author')).toHaveText(name);

    // Sending with the composer form posts it; the redirect shows it in the log.
    const text = `sent without js ${uniqueSuffix()}`;
    await composer(page).fill(text);
    await page.getByRole('button', { name: 'Send', exact: true }).click();
    await expect(messageWithText(page, text)).toHaveCount(1);
    await expect(items).toHaveCount(3);
    await expect(page).toHaveURL(new RegExp(`/c/${escapeRegExp(channel)}$`));
  });

  test('older messages are a link away, a page of up to 100 at a time', async ({ newUser }) => {
    test.setTimeout(90_000);
    expect(test.info().project.use.javaScriptEnabled).toBe(false);
    const channel = uniqueChannel('nojs-old');
    // Nobody may post 150 messages in one burst (rate limit): three people take turns.
    const users = [];
    for (const who of ['Ida', 'Jon', 'Kim']) users.push(await newUser(`${who} ${uniqueSuffix()}`));
    const reader = users[0].page;
    const created = await reader.request.post('/api/create_channel', { form: { name: channel } });
    expect(created.ok(), `POST /api/create_channel answered ${created.status()}`).toBe(true);
    await postManyViaApi(users, channel, 150, (i) => `msg ${i}`);

    await reader.goto(`/c/${channel}`);
    await expect(channelHeading(reader, channel)).toBeVisible();
    const items = messageLog(reader).locator('li.message');
    await expect(items).toHaveCount(100);
    await expect(items.first().locator('.body')).toHaveText('msg 51');
    await expect(items.last().locator('.body')).toHaveText('msg 150');

    // A plain link to the page before.
    await messageLog(reader).getByRole('link', { name: 'Load older messages' }).click();
    await expect(reader).toHaveURL(new RegExp(`/c/${escapeRegExp(channel)}\\?before=\\d+$`));
    await expect(channelHeading(reader, channel)).toBeVisible();
    const older = messageLog(reader).locator('li.message .body');
    await expect(older).toHaveText(Array.from({ length: 50 }, (_, i) => `msg ${i + 1}`));
    // That was the start of the channel; an older page is for reading only.
    await expect(reader.getByRole('link', { name: 'Load older messages' })).toHaveCount(0);
    await expect(composer(reader)).toHaveCount(0);

    await reader.getByRole('link', { name: 'Back to the newest messages' }).click();
    await expect(reader).toHaveURL(new RegExp(`/c/${escapeRegExp(channel)}$`));
    await expect(items).toHaveCount(100);
    await expect(items.first().locator('.body')).toHaveText('msg 51');
    await expect(composer(reader)).toBeVisible();
  });

  test('on a phone the conversations menu opens and leads to a channel', async ({ page }) => {
    await page.setViewportSize({ width: 390, height: 800 });
    await page.goto('/');
    await page.getByLabel('Display name').fill(`Pocket ${uniqueSuffix()}`);
    await page.getByRole('button', { name: 'Continue' }).click();
    await expect(conversationsMenu(page)).toBeVisible();
    await expect(channelNav(page)).toBeHidden();

    await conversationsMenu(page).click();
    await expect(channelNav(page)).toBeVisible();
    await channelLink(page, 'general').click();
    await expect(channelHeading(page, 'general')).toBeVisible();
    // A new page: the menu is folded again and the messages have the screen.
    await expect(channelNav(page)).toBeHidden();
    await expect(composer(page)).toBeInViewport();
  });

  test('the server groups messages by author and names the day', async ({ page }) => {
    await page.goto('/');
    await page.getByLabel('Display name').fill(`Grouped ${uniqueSuffix()}`);
    await page.getByRole('button', { name: 'Continue' }).click();
    const channel = uniqueChannel('nojs-group');
    const created = await page.request.post('/api/create_channel', { form: { name: channel } });
    expect(created.ok(), `POST /api/create_channel answered ${created.status()}`).toBe(true);
    await postViaApi(page, channel, 'one');
    await postViaApi(page, channel, 'two');
    await page.goto(`/c/${channel}`);
    const items = messageLog(page).locator('li.message');
    await expect(items).toHaveCount(2);
    await expect(items.nth(0)).toHaveAttribute('data-day', 'Today');
    await expect(items.nth(0)).not.toHaveClass(/\bcont\b/);
    await expect(items.nth(1)).toHaveClass(/\bcont\b/);
    await expect(items.nth(1)).not.toHaveAttribute('data-day', /./);
    // The second shows just its body.
    const box = await items.nth(1).locator('.author').boundingBox();
    expect(box?.width ?? 0).toBeLessThanOrEqual(1);
  });
});

test.describe('conversations without JavaScript', () => {
  test('direct messages, edits, reactions, threads and private channels are plain pages and forms', async ({ newUser }) => {
    expect(test.info().project.use.javaScriptEnabled).toBe(false);
    const alice = await newUser(`Alice ${uniqueSuffix()}`);
    const bob = await newUser(`Bob ${uniqueSuffix()}`);

    // A direct message, started from the people picker.
    await alice.page.getByRole('link', { name: 'New message' }).click();
    await alice.page.getByLabel('Find people by name').fill(bob.name);
    await alice.page.getByRole('button', { name: 'Search' }).click();
    await alice.page.getByRole('button', { name: `Message ${bob.name}`, exact: true }).click();
    await expect(alice.page).toHaveURL(/\/d\/\d+$/);
    const dm = alice.page.url();
    await composer(alice.page).fill('helo Bob');
    await alice.page.getByRole('button', { name: 'Send', exact: true }).click();
    await expect(messageWithText(alice.page, 'helo Bob')).toHaveCount(1);

    // Edit: a link to the same page with the edit form.
    await messageWithText(alice.page, 'helo Bob').getByRole('link', { name: 'Edit' }).click();
    await alice.page.getByLabel('Edit message', { exact: true }).fill('hello Bob');
    await alice.page.getByRole('button', { name: 'Save' }).click();
    const edited = messageWithText(alice.page, 'hello Bob');
    await expect(edited.locator('.edited')).toHaveText('(edited)');

    // Bob sees it in his sidebar, opens it, reacts with a button.
    await bob.page.goto('/');
    await channelNav(bob.page).getByRole('link', { name: alice.name }).click();
    const onBob = messageWithText(bob.page, 'hello Bob');
    await onBob.getByLabel('Add reaction').click();
    await onBob.getByRole('button', { name: 'React with 🎉' }).click();
    await expect(messageWithText(bob.page, 'hello Bob').getByRole('button', { name: new RegExp(`^🎉 1: ${bob.name}`) })).toBeVisible();

    // A thread is a page with a reply form.
    await messageWithText(bob.page, 'hello Bob').getByRole('link', { name: 'Reply in thread' }).click();
    await expect(bob.page).toHaveURL(/\/d\/\d+\/t\/[0-9a-f]+$/);
    const thread = bob.page.getByRole('complementary', { name: 'Thread' });
    await thread.getByLabel('Reply').fill('hi Alice');
    await thread.getByRole('button', { name: 'Reply' }).click();
    await expect(bob.page.getByRole('complementary', { name: 'Thread' }).getByText('hi Alice')).toBeVisible();
    await alice.page.goto(dm);
    await expect(messageWithText(alice.page, 'hello Bob').getByRole('link', { name: /^1 reply/ })).toBeVisible();

    // A private channel: only listed for its members, who add people by name.
    const secret = uniqueChannel('hush');
    await alice.page.getByLabel('Channel name').fill(secret);
    await alice.page.getByLabel('Private').check();
    await alice.page.getByRole('button', { name: 'Create channel' }).click();
    await expect(alice.page).toHaveURL(new RegExp(`/c/${escapeRegExp(secret)}$`));
    await bob.page.goto(`/c/${secret}`);
    await expect(bob.page.getByRole('alert')).toContainText(`There is no channel named #${secret}`);
    await alice.page.getByRole('link', { name: 'Add people' }).click();
    await alice.page.getByLabel('Find people by name').fill(bob.name);
    await alice.page.getByRole('button', { name: 'Search' }).click();
    await alice.page.getByRole('button', { name: `Add ${bob.name}` }).click();
    await bob.page.goto('/');
    await channelNav(bob.page).getByRole('link', { name: `🔒${secret}` }).click();
    await expect(channelHeading(bob.page, secret)).toBeVisible();
  });
});
