// axe-core on every page a user sees, in both colour schemes and at desktop and phone sizes:
// no violation of impact "serious" or "critical" is allowed.
import AxeBuilder from '@axe-core/playwright';
import {
  test,
  expect,
  chooseName,
  createChannel,
  messageWithText,
  postViaApi,
  sendMessage,
  uniqueChannel,
  uniqueSuffix,
  unfoldSidebar,
  waitForHydration,
  type User,
} from './helpers';
import type { Page } from '@playwright/test';

const schemes = ['light', 'dark'] as const;
const viewports = {
  desktop: { width: 1280, height: 720 },
  phone: { width: 390, height: 800 },
};

/** Runs axe on the page as it is now; fails listing every serious or critical violation. */
async function expectNoSeriousViolations(page: Page, what: string): Promise<void> {
  const results = await new AxeBuilder({ page }).analyze();
  const serious = results.violations
    .filter((v) => v.impact === 'serious' || v.impact === 'critical')
    .map((v) => `${v.id} (${v.impact}): ${v.help}\n    ${v.nodes.map((n) => n.target.join(' ')).join('\n    ')}`);
  expect(serious, `axe on ${what}`).toEqual([]);
}

for (const scheme of schemes) {
  for (const [size, viewport] of Object.entries(viewports)) {
    test(`no serious axe violation on any page (${scheme}, ${size})`, async ({
      newVisitor,
      newUser,
    }) => {
      test.setTimeout(60_000);
      const { page } = await newVisitor({ viewport, colorScheme: scheme });

      // The name prompt.
      await page.goto('/');
      await waitForHydration(page);
      await expect(page.getByLabel('Display name')).toBeVisible();
      await expectNoSeriousViolations(page, 'the name prompt');

      // A channel with someone else's messages and one's own (which has a delete button).
      await chooseName(page, `Axe ${uniqueSuffix()}`);
      const channel = uniqueChannel('axe');
      await createChannel(page, channel);
      const other: User = await newUser(`Other ${uniqueSuffix()}`, { viewport, colorScheme: scheme });
      await postViaApi(other.page, channel, 'a message from someone else');
      await postViaApi(other.page, channel, 'and a second one, straight after');
      const mine = `my own message ${uniqueSuffix()}`;
      await sendMessage(page, mine);
      await expect(messageWithText(page, 'a message from someone else')).toHaveCount(1);
      await expect(messageWithText(page, mine)).toHaveCount(1);
      await expectNoSeriousViolations(page, 'a channel page');
      if (size === 'phone') {
        await unfoldSidebar(page);
        await expectNoSeriousViolations(page, 'a channel page with the conversations menu open');
      }

      // A reaction, a thread open beside the channel, and the members panel.
      const theirs = messageWithText(page, 'a message from someone else');
      await theirs.hover();
      await theirs.getByLabel('Add reaction').click();
      await expect(theirs.getByRole('group', { name: 'Pick a reaction' })).toBeVisible();
      await expectNoSeriousViolations(page, 'the reaction picker');
      await theirs.getByRole('button', { name: 'React with 👍' }).click();
      await expect(theirs.getByRole('group', { name: 'Pick a reaction' })).toHaveCount(0);
      await expect(theirs.locator('.reaction')).toHaveCount(1);
      await theirs.hover();
      await theirs.getByRole('link', { name: 'Reply in thread' }).click();
      await expect(page.getByRole('complementary', { name: 'Thread' })).toBeVisible();
      await page.getByRole('button', { name: 'Members' }).click();
      await expect(page.getByRole('list', { name: 'Members' })).toBeVisible();
      await expectNoSeriousViolations(page, 'a thread beside its channel, with a reaction and the members');

      // The people picker and a direct message.
      await page.goto(`/people?q=${encodeURIComponent(other.name)}`);
      await waitForHydration(page);
      await expect(page.getByRole('button', { name: `Message ${other.name}`, exact: true })).toBeVisible();
      await expectNoSeriousViolations(page, 'the people picker');
      await page.getByRole('button', { name: `Message ${other.name}`, exact: true }).click();
      await expect(page).toHaveURL(/\/d\/\d+$/);
      await expect(page.getByRole('heading', { level: 1, name: other.name })).toBeVisible();
      await waitForHydration(page);
      await sendMessage(page, `direct ${uniqueSuffix()}`);
      await expectNoSeriousViolations(page, 'a direct message');

      // Browse channels.
      await page.goto('/channels');
      await waitForHydration(page);
      await expect(page.getByRole('heading', { level: 1, name: 'Browse channels' })).toBeVisible();
      await expectNoSeriousViolations(page, 'the channel directory');

      // The same channel rendered by the server alone (what a reader without JavaScript gets).
      // axe itself needs JavaScript, so the page keeps it but never gets the app's scripts.
      const plain = await newVisitor({ viewport, colorScheme: scheme });
      await plain.context.route(/\/pkg\/.*\.(js|wasm)$/, (route) => route.abort());
      await chooseNameWithoutScript(plain.page, `Plain ${uniqueSuffix()}`);
      await plain.page.goto(`/c/${channel}`);
      await expect(messageWithText(plain.page, mine)).toHaveCount(1);
      await expect(plain.page.locator('html[data-hydrated]')).toHaveCount(0);
      await expectNoSeriousViolations(plain.page, 'the channel page without JavaScript');
    });
  }
}

/** The name prompt answered by a plain form post (the page has no app script). */
async function chooseNameWithoutScript(page: Page, name: string): Promise<void> {
  await page.goto('/');
  await page.getByLabel('Display name').fill(name);
  await page.getByRole('button', { name: 'Continue' }).click();
  await expect(page.locator('header').getByTestId('me-name')).toHaveText(name);
}
