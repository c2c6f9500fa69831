# Fluentd's own in_http, listening on an unshared socket. The peers' Fluentd
# runs with --disable-shared-socket (Debian's serverengine cannot open the
# supervisor's socket manager), which in_http's shared listener needs; this
# subclass changes only that, so benches/inputs.sh measures in_http's code.
require 'fluent/plugin/in_http'

module Fluent::Plugin
  class HttpUnsharedInput < HttpInput
    Fluent::Plugin.register_input('http_unshared', self)

    def server_create_connection(title, port, **kwargs, &block)
      super(title, port, **kwargs.merge(shared: false), &block)
    end
  end
end
