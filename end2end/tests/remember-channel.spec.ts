import {
  test,
  expect,
  channelHeading,
  createChannel,
  escapeRegExp,
  uniqueChannel,
  uniqueSuffix,
  waitForHydration,
} from './helpers';

test('the last open channel is reopened after the browser is closed', async ({
  browser,
  newUser,
}) => {
  const channel = uniqueChannel('back');
  const first = await newUser(`Remy ${uniqueSuffix()}`);
  await createChannel(first.page, channel);

  // The app remembers the channel in local storage; wait until it has.
  await expect
    .poll(() => first.page.evaluate(() => JSON.stringify({ ...window.localStorage })))
    .toContain(channel);

  const storageState = await first.context.storageState();
  await first.context.close();

  const context = await browser.newContext({ storageState });
  try {
    const page = await context.newPage();
    await page.goto('/');
    await waitForHydration(page);
    await expect(page).toHaveURL(new RegExp(`/c/${escapeRegExp(channel)}$`));
    await expect(channelHeading(page, channel)).toBeVisible();
  } finally {
    await context.close();
  }
});
