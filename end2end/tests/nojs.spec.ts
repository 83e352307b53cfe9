// Runs in the `nojs` project: JavaScript is disabled, every action is a plain
// HTML form post answered by a redirect.
import {
  test,
  expect,
  channelHeading,
  channelLink,
  composer,
  escapeRegExp,
  messageLog,
  messageWithText,
  myName,
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
});
