import {
  test,
  expect,
  channelNav,
  chooseName,
  composer,
  createChannel,
  messageLog,
  sendMessage,
  uniqueChannel,
  uniqueSuffix,
  waitForHydration,
} from './helpers';

test.describe('accessibility', () => {
  test('landmarks, live region and labelled inputs', async ({ page }) => {
    await page.goto('/');
    await waitForHydration(page);
    await expect(page.getByRole('textbox', { name: 'Display name', exact: true })).toBeVisible();

    await chooseName(page, `Ally ${uniqueSuffix()}`);
    await expect(channelNav(page)).toBeVisible();
    await expect(page.getByRole('textbox', { name: 'Channel name', exact: true })).toBeVisible();

    const channel = uniqueChannel('a11y');
    await createChannel(page, channel);
    await expect(messageLog(page)).toBeVisible();
    // The live region wraps the list; the list itself keeps its list semantics, so each
    // message is a list item of it.
    await expect(messageLog(page)).not.toHaveJSProperty('tagName', 'OL');
    await expect(messageLog(page).getByRole('list')).toHaveCount(1);
    const text = `listed ${uniqueSuffix()}`;
    await sendMessage(page, text);
    await expect(messageLog(page).getByRole('list').getByRole('listitem').filter({ hasText: text })).toHaveCount(1);
    await expect(page.getByRole('textbox', { name: 'Message', exact: true })).toBeVisible();
    await expect(page.getByRole('button', { name: 'Send', exact: true })).toBeVisible();
  });

  test('on a phone-sized screen the messages and the composer are usable', async ({ page }) => {
    await page.setViewportSize({ width: 390, height: 800 });
    await chooseName(page, `Phone ${uniqueSuffix()}`);
    const channel = uniqueChannel('phone');
    await createChannel(page, channel);

    const text = `small screen ${uniqueSuffix()}`;
    await sendMessage(page, text);

    await expect(messageLog(page)).toBeVisible();
    await expect(messageLog(page).locator('li.message', { hasText: text })).toBeInViewport();
    await expect(composer(page)).toBeInViewport();
    await expect(page.getByRole('button', { name: 'Send', exact: true })).toBeInViewport();
  });
});
