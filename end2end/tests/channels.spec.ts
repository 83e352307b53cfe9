import {
  test,
  expect,
  channelHeading,
  channelLink,
  channelNav,
  chooseName,
  createChannel,
  escapeRegExp,
  openChannel,
  uniqueChannel,
  uniqueSuffix,
} from './helpers';

test.describe('channels', () => {
  test.beforeEach(async ({ page }) => {
    await chooseName(page, `Chan ${uniqueSuffix()}`);
  });

  test('creating a channel opens it and lists it in the sidebar', async ({ page }) => {
    const name = uniqueChannel('new');
    await createChannel(page, name);

    const link = channelLink(page, name);
    await expect(link).toBeVisible();
    await expect(link).toHaveAttribute('href', `/c/${name}`);
    await expect(link).toHaveAttribute('aria-current', 'page');
    await expect(channelLink(page, 'general')).toBeVisible();
  });

  test('a name that differs only by case and spaces is refused as already existing', async ({
    page,
  }) => {
    const name = uniqueChannel('dup');
    await createChannel(page, name);

    // Count the links for this channel whatever their case: other tests create
    // channels concurrently, so the total number of links may grow meanwhile.
    const sameName = channelNav(page).getByRole('link', {
      name: new RegExp(`^#${escapeRegExp(name)}$`, 'i'),
    });
    await expect(sameName).toHaveCount(1);

    await page.getByLabel('Channel name').fill(`  ${name.toUpperCase()}  `);
    await page.getByRole('button', { name: 'Create channel' }).click();

    await expect(page.getByRole('alert')).toContainText('That channel name is taken.');
    // Back on the same channel (the error travels in the URL, as a code).
    await expect(page).toHaveURL(new RegExp(`/c/${escapeRegExp(name)}(\\?.*)?$`));
    await expect(sameName).toHaveCount(1);
  });

  test('an invalid channel name is refused with an error', async ({ page }) => {
    const home = uniqueChannel('home');
    await createChannel(page, home);

    await page.getByLabel('Channel name').fill('bad name!');
    await page.getByRole('button', { name: 'Create channel' }).click();

    await expect(page.getByRole('alert')).toBeVisible();
    await expect(page.getByRole('alert')).not.toHaveText('');
    await expect(page).toHaveURL(new RegExp(`/c/${escapeRegExp(home)}(\\?.*)?$`));
    await expect(channelNav(page).getByRole('link', { name: /bad name/i })).toHaveCount(0);
  });

  test("a channel another person creates is under Browse channels, not in my sidebar", async ({
    page,
    newUser,
  }) => {
    const bob = await newUser(`Bob ${uniqueSuffix()}`);
    const name = uniqueChannel('bobs');
    await createChannel(bob.page, name);

    await openChannel(page, 'general');
    await expect(channelLink(page, name)).toHaveCount(0);
    await page.getByRole('link', { name: 'Browse channels' }).click();
    await expect(page.getByRole('heading', { name: 'Browse channels' })).toBeVisible();
    // Other runs' channels may come first: page on until it shows up.
    for (let i = 0; i < 50; i++) {
      if (await page.getByRole('link', { name: `#${name}`, exact: true }).count()) break;
      await page.getByRole('link', { name: 'More channels' }).click();
    }
    await page.getByRole('link', { name: `#${name}`, exact: true }).click();
    await expect(channelHeading(page, name)).toBeVisible();
  });

  test('clicking a channel link opens it and Back returns to the previous channel', async ({
    page,
  }) => {
    const first = uniqueChannel('one');
    const second = uniqueChannel('two');
    await createChannel(page, first);
    await createChannel(page, second);

    await channelLink(page, first).click();
    await expect(page).toHaveURL(new RegExp(`/c/${escapeRegExp(first)}$`));
    await expect(channelHeading(page, first)).toBeVisible();
    await expect(channelLink(page, first)).toHaveAttribute('aria-current', 'page');

    await page.goBack();
    await expect(page).toHaveURL(new RegExp(`/c/${escapeRegExp(second)}$`));
    await expect(channelHeading(page, second)).toBeVisible();
    await expect(channelLink(page, second)).toHaveAttribute('aria-current', 'page');
  });
});
