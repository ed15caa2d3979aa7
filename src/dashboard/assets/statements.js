// The statements of closed periods: one line per period, with the customer's statement as a
// printable page (save as PDF from the browser) and as CSV; for an operator looking at every
// customer, the period's export of all statements.
import * as api from "./api.js";

const $ = (id) => document.getElementById(id);

function button(label, onClick) {
  const element = document.createElement("button");
  element.type = "button";
  element.textContent = label;
  element.addEventListener("click", async () => {
    try {
      await onClick();
    } catch (problem) {
      $("statements-status").textContent = `The download failed: ${problem.message}`;
    }
  });
  return element;
}

/** Lists the closed periods with their downloads for `customer` ("" for an operator's all). */
export async function showStatements(customer) {
  const list = $("statements");
  list.replaceChildren();
  $("statements-status").textContent = "";
  let periods;
  try {
    periods = await api.json("/v1/periods");
  } catch (problem) {
    $("statements-status").textContent = `Closed periods could not be loaded: ${problem.message}`;
    return;
  }
  $("statements-none").hidden = periods.length > 0;
  for (const period of periods) {
    const item = document.createElement("li");
    const span = document.createElement("span");
    span.textContent = `${period.id}: ${period.from.slice(0, 10)} to ${period.to.slice(0, 10)}, closed ${period.closed_at.slice(0, 10)}`;
    item.append(span, " ");
    const id = encodeURIComponent(period.id);
    if (customer) {
      const base = `/v1/customers/${encodeURIComponent(customer)}/statements/${id}`;
      item.append(
        button("Printable statement", () => api.download(`${base}?format=html`, `statement-${customer}-${period.id}.html`)),
        " ",
        button("CSV", () => api.download(`${base}?format=csv`, `statement-${customer}-${period.id}.csv`)),
      );
    } else {
      item.append(button("All customers' statements (CSV)", () => api.download(`/v1/periods/${id}/export`, `statements-${period.id}.csv`)));
    }
    list.append(item);
  }
}
