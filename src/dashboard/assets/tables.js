// Tables behind every chart: for screen readers, for copying, and sortable by any column.

function cell(tag, text) {
  const element = document.createElement(tag);
  element.textContent = text;
  return element;
}

/**
 * Renders `rows` (objects) into `container` as a table with a caption. Each column is
 * {key, label, show(value, row) -> text}; sorting compares the raw values.
 */
export function table(container, caption, columns, rows, { sortBy = null, descending = true } = {}) {
  let order = { key: sortBy, descending };
  const element = document.createElement("table");
  const head = element.createTHead().insertRow();
  const body = element.createTBody();
  element.createCaption().textContent = caption;
  element.caption.className = "visually-hidden";

  const draw = () => {
    const sorted = [...rows];
    if (order.key) {
      sorted.sort((a, b) => {
        const x = a[order.key];
        const y = b[order.key];
        const compared = typeof x === "number" && typeof y === "number" ? x - y : String(x).localeCompare(String(y));
        return order.descending ? -compared : compared;
      });
    }
    body.replaceChildren(
      ...sorted.map((row) => {
        const tr = document.createElement("tr");
        columns.forEach((column, i) => {
          tr.append(cell(i === 0 ? "th" : "td", column.show ? column.show(row[column.key], row) : String(row[column.key])));
          if (i === 0) tr.firstChild.scope = "row";
        });
        return tr;
      }),
    );
    [...head.cells].forEach((th, i) => {
      const key = columns[i].key;
      th.setAttribute("aria-sort", order.key === key ? (order.descending ? "descending" : "ascending") : "none");
    });
  };

  for (const column of columns) {
    const th = document.createElement("th");
    th.scope = "col";
    const button = cell("button", column.label);
    button.type = "button";
    button.addEventListener("click", () => {
      order = { key: column.key, descending: order.key === column.key ? !order.descending : true };
      draw();
    });
    th.append(button);
    head.append(th);
  }
  draw();
  container.replaceChildren(rows.length ? element : cell("p", "Nothing to show for this view."));
}
