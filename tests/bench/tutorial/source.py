"""The tutorial's stock ticker source, for the bench's side-by-side (`make bench`).

This is the connector that `../shared/seed/` builds: Airbyte's "Building a Source Connector: The
Hard Way" tutorial with its incremental sync added. `discover`, `read`, `_call_api` and `check`
are the seed's code as printed there; the rest of the file (the imports, the argument parser,
`spec`, the log helpers), which the seed leaves to the first tutorial, is written to behave as
that tutorial's `source.py` does. Its bugs are kept on purpose: it is what the bench compares
source-lua with, as a user would run it (one ticker per process, `limit=120` and no `next_url`,
the key in the URL, exit on any status but 200).

One change: the API's address is read from $TUTORIAL_API_URL (default https://api.polygon.io,
as the tutorial hard-codes it), so that the bench can point it at its local server.
"""
import argparse
import json
import os
import sys
from datetime import date, datetime, timedelta, timezone

import requests

API_URL = os.environ.get("TUTORIAL_API_URL", "https://api.polygon.io")


def read_json(filepath):
    with open(filepath, "r") as f:
        return json.loads(f.read())


def get_input_file_path(path):
    return path if os.path.isabs(path) else os.path.join(os.getcwd(), path)


def log(message):
    print(json.dumps({"type": "LOG", "log": message}))


def log_error(error_message):
    current_time_in_ms = int(datetime.now().timestamp()) * 1000
    print(json.dumps({"type": "TRACE", "trace": {"type": "ERROR", "emitted_at": current_time_in_ms,
                                                 "error": {"message": error_message}}}))


def spec():
    spec_path = os.path.join(os.path.dirname(os.path.realpath(__file__)), "spec.json")
    print(json.dumps({"type": "SPEC", "spec": read_json(spec_path)}))


def discover():
    catalog = {
        "streams": [{
            "name": "stock_prices",
            "supported_sync_modes": ["full_refresh", "incremental"],
            "source_defined_cursor": True,
            "default_cursor_field": ["date"],
            "json_schema": {
                "properties": {
                    "date": {
                        "type": "string"
                    },
                    "price": {
                        "type": "number"
                    },
                    "stock_ticker": {
                        "type": "string"
                    }
                }
            }
        }]
    }
    airbyte_message = {"type": "CATALOG", "catalog": catalog}
    print(json.dumps(airbyte_message))


def read(config, catalog, state):
    # Assert required configuration was provided
    if "api_key" not in config or "stock_ticker" not in config:
        log_error("Input config must contain the properties 'api_key' and 'stock_ticker'")
        sys.exit(1)

    # Find the stock_prices stream if it is present in the input catalog
    stock_prices_stream = None
    for configured_stream in catalog["streams"]:
        if configured_stream["stream"]["name"] == "stock_prices":
            stock_prices_stream = configured_stream

    if stock_prices_stream is None:
        log_error("No streams selected")
        return

    # By default we fetch stock prices for the 7 day period ending with today
    today = date.today()
    cursor_value = today.strftime("%Y-%m-%d")
    from_day = (today - timedelta(days=7)).strftime("%Y-%m-%d")

    # In case of incremental sync, state should contain the last date when we fetched stock prices
    if stock_prices_stream["sync_mode"] == "incremental":
        if state and "stock_prices" in state and state["stock_prices"].get("date"):
            from_date = datetime.strptime(state["stock_prices"].get("date"), "%Y-%m-%d")
            from_day = (from_date + timedelta(days=1)).strftime("%Y-%m-%d")

    # If the state indicates that we have already ran the sync up to cursor_value, we can skip the sync
    if cursor_value > from_day:
        # If we've made it this far, all the configuration is good and we can pull the market data
        response = _call_api(ticker=config["stock_ticker"], token = config["api_key"], from_day=from_day, to_day=cursor_value)
        if response.status_code != 200:
            # In a real scenario we'd handle this error better :)
            log_error("Failure occurred when calling Polygon.io API")
            sys.exit(1)
        else:
            # Stock prices are returned sorted by date in ascending order
            # We want to output them one by one as AirbyteMessages
            response_json = response.json()
            if response_json["resultsCount"] > 0:
                results = response_json["results"]
                for result in results:
                    data = {"date": datetime.fromtimestamp(result["t"]/1000, tz=timezone.utc).strftime("%Y-%m-%d"), "stock_ticker": config["stock_ticker"], "price": result["c"]}
                    record = {"stream": "stock_prices", "data": data, "emitted_at": int(datetime.now().timestamp()) * 1000}
                    output_message = {"type": "RECORD", "record": record}
                    print(json.dumps(output_message))

                    # We update the cursor as we print out the data, so that next time sync starts where we stopped printing out results
                    if stock_prices_stream["sync_mode"] == "incremental":
                        cursor_value = datetime.fromtimestamp(results[len(results)-1]["t"]/1000, tz=timezone.utc).strftime("%Y-%m-%d")

    # Emit new state message.
    if stock_prices_stream["sync_mode"] == "incremental":
        output_message = {"type": "STATE", "state": {"data": {"stock_prices": {"date": cursor_value}}}}
        print(json.dumps(output_message))


def _call_api(ticker, token, from_day, to_day):
    return requests.get(f"{API_URL}/v2/aggs/ticker/{ticker}/range/1/day/{from_day}/{to_day}?sort=asc&limit=120&apiKey={token}")


def check(config):
    # Validate input configuration by attempting to get the daily closing prices of the input stock ticker
    response = _call_api(ticker=config["stock_ticker"], token=config["api_key"], from_day=datetime.now().date()-timedelta(days=1), to_day=datetime.now().date())
    if response.status_code == 200:
        result = {"status": "SUCCEEDED"}
    elif response.status_code == 403:
        # HTTP code 403 means authorization failed so the API key is incorrect
        result = {"status": "FAILED", "message": "API Key is incorrect."}
    else:
        result = {"status": "FAILED", "message": "Input configuration is incorrect. Please verify the input stock ticker and API key."}

    output_message = {"type": "CONNECTION_STATUS", "connectionStatus": result}
    print(json.dumps(output_message))


def run(args):
    main_parser = argparse.ArgumentParser()
    subparsers = main_parser.add_subparsers(title="commands", dest="command")
    subparsers.add_parser("spec", help="outputs the json configuration specification")
    for command, help_text in (("check", "checks the config used to connect"),
                               ("discover", "outputs a catalog describing the source's schema"),
                               ("read", "reads the source and outputs messages to STDOUT")):
        command_parser = subparsers.add_parser(command, help=help_text)
        if command == "read":
            command_parser.add_argument("--state", type=str, required=False, help="path to the json-encoded state file")
        required = command_parser.add_argument_group("required named arguments")
        required.add_argument("--config", type=str, required=True, help="path to the json configuration file")
        if command == "read":
            required.add_argument("--catalog", type=str, required=True,
                                  help="path to the catalog used to determine which data to read")

    parsed_args = main_parser.parse_args(args)
    command = parsed_args.command
    if command == "spec":
        spec()
    elif command == "check":
        check(read_json(get_input_file_path(parsed_args.config)))
    elif command == "discover":
        discover()
    elif command == "read":
        config = read_json(get_input_file_path(parsed_args.config))
        configured_catalog = read_json(get_input_file_path(parsed_args.catalog))
        state = None
        if parsed_args.state:
            state = read_json(get_input_file_path(parsed_args.state))
        read(config, configured_catalog, state)
    else:
        log_error("Invalid command. Allowable commands: [spec, check, discover, read]")
        sys.exit(1)
    sys.exit(0)


if __name__ == "__main__":
    run(sys.argv[1:])
