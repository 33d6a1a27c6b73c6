/* built by `npm run build` in clients/js */
