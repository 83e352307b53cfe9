import {
  test,
  expect,
  chooseName,
  channelNav,
  composer,
  myName,
  uniqueSuffix,
  waitForHydration,
} from './helpers';

test.describe('choosing a display name', () => {
  test('a first visit asks for a display name before showing any channels', async ({ page }) => {
    await page.goto('/');
    await waitForHydration(page);

    await expect(page.getByLabel('Display name')).toBeVisible();
    await expect(page.getByRole('button', { name: 'Continue' })).toBeVisible();
    await expect(channelNav(page)).toHaveCount(0);
    await expect(composer(page)).toHaveCount(0);

    await page.getByLabel('Display name').fill(`Newcomer ${uniqueSuffix()}`);
    await page.getByRole('button', { name: 'Continue' }).click();

    await expect(channelNav(page)).toBeVisible();
    await expect(page.getByLabel('Display name')).toHaveCount(0);
  });

  test('an empty name is refused with an error and the prompt stays', async ({ page }) => {
    await page.goto('/');
    await waitForHydration(page);

    // Only spaces: empty once trimmed.
    await page.getByLabel('Display name').fill('   ');
    await page.getByRole('button', { name: 'Continue' }).click();

    await expect(page.getByRole('alert')).toBeVisible();
    await expect(page.getByRole('alert')).not.toHaveText('');
    await expect(page.getByLabel('Display name')).toBeVisible();
    await expect(myName(page)).toHaveCount(0);
    await expect(channelNav(page)).toHaveCount(0);
  });

  test('a name longer than 32 characters is refused with an error and the prompt stays', async ({
    page,
  }) => {
    await page.goto('/');
    await waitForHydration(page);

    await page.getByLabel('Display name').fill('x'.repeat(33));
    await page.getByRole('button', { name: 'Continue' }).click();

    await expect(page.getByRole('alert')).toBeVisible();
    await expect(page.getByRole('alert')).not.toHaveText('');
    await expect(page.getByLabel('Display name')).toBeVisible();
    await expect(myName(page)).toHaveCount(0);
    await expect(channelNav(page)).toHaveCount(0);
  });

  test('a name of exactly 32 characters is accepted and shown in the header', async ({ page }) => {
    const name = `Max ${uniqueSuffix()}`.padEnd(32, 'z');
    await chooseName(page, name);
    await expect(myName(page)).toHaveText(name);
  });

  test('the chosen name is shown in the header, also after a reload', async ({ page }) => {
    const name = `Ada ${uniqueSuffix()}`;
    await chooseName(page, name);

    await expect(myName(page)).toHaveText(name);

    await page.reload();
    await waitForHydration(page);
    await expect(myName(page)).toHaveText(name);
    await expect(page.getByLabel('Display name')).toHaveCount(0);
  });

  test('the name is remembered after the browser is closed and opened again', async ({
    browser,
    newUser,
  }) => {
    const name = `Grace ${uniqueSuffix()}`;
    const first = await newUser(name);
    const storageState = await first.context.storageState();
    await first.context.close();

    const context = await browser.newContext({ storageState });
    try {
      const page = await context.newPage();
      await page.goto('/');
      await waitForHydration(page);
      await expect(myName(page)).toHaveText(name);
      await expect(page.getByRole('button', { name: 'Continue' })).toHaveCount(0);
    } finally {
      await context.close();
    }
  });

  test('the name can be changed with "Change name"', async ({ page }) => {
    const suffix = uniqueSuffix();
    await chooseName(page, `Linus ${suffix}`);

    await page.getByRole('button', { name: 'Change name' }).click();
    const field = page.getByLabel('Display name');
    await expect(field).toBeVisible();
    await field.fill(`Margaret ${suffix}`);
    await page.getByRole('button', { name: 'Save' }).click();

    await expect(myName(page)).toHaveText(`Margaret ${suffix}`);

    await page.reload();
    await waitForHydration(page);
    await expect(myName(page)).toHaveText(`Margaret ${suffix}`);
  });
});
